// The management API client: basic auth from the login form, kept in sessionStorage (gone
// when the tab closes or on logout), JSON in and out, RabbitMQ's error bodies as ApiError.

const KEY = "amqp-broker-ui.login";

export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason || error || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }
}

function basic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return "Basic " + btoa(text);
}

export function login() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function saveLogin(user, password) {
  sessionStorage.setItem(KEY, JSON.stringify({ user, authorization: basic(user, password) }));
}

export function clearLogin() {
  sessionStorage.removeItem(KEY);
}

// called with the ApiError when the API answers 401 to a stored login (user deleted, password
// changed): the app goes back to the login form
let unauthorized = () => {};
export function onUnauthorized(handler) {
  unauthorized = handler;
}

// one path segment: a vhost "/" is "%2F", as RabbitMQ's API expects
export const seg = (s) => encodeURIComponent(s);
export const path = (...parts) => parts.map(seg).join("/");

export async function api(method, url, body, { authorization, headers = {} } = {}) {
  const auth = authorization || (login() || {}).authorization;
  const init = {
    method,
    // no cookies, and no browser password prompt on a 401: the page has its own login form
    credentials: "omit",
    headers: { Accept: "application/json", ...headers },
  };
  if (auth) init.headers.Authorization = auth;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch("api/" + url.replace(/^\/+/, ""), init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const err = data && typeof data === "object" ? data : {};
    const e = new ApiError(response.status, err.error || response.statusText,
                           err.reason || (typeof data === "string" ? data : ""));
    // RabbitMQ answers 401 both to a bad login and to a user whose tags do not allow the
    // request ("Not administrator user"): only the first ends the session
    if (response.status === 401 && !authorization && auth && !(await loginStillValid(auth))) {
      unauthorized(e);
    }
    throw e;
  }
  return data;
}

async function loginStillValid(authorization) {
  try {
    const r = await fetch("api/whoami", { credentials: "omit",
                                          headers: { Authorization: authorization } });
    return r.ok;
  } catch {
    return true; // the broker is unreachable, not the login wrong
  }
}

export const get = (url) => api("GET", url);
export const put = (url, body) => api("PUT", url, body === undefined ? {} : body);
export const post = (url, body) => api("POST", url, body === undefined ? {} : body);
export const del = (url, headers) => api("DELETE", url, undefined, { headers });
