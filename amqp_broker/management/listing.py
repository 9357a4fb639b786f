"""RabbitMQ's list features for every list endpoint (rabbit_mgmt_util's reply_list and
pagination): `columns`, `sort` / `sort_reverse`, and, when `page` is given, `page`,
`page_size` (default 100, at most 500), `name` and `use_regex`, answered in the paginated
shape (`items` with `filtered_count`, `item_count`, `page`, `page_count`, `page_size`,
`total_count`).

A handler builds its full list of JSON objects (dicts) and returns
`reply_list(request, items)`; `default_sort` is RabbitMQ's for that resource (vhost and
name for most). `reply_item(request, item)` applies `columns` to a single object.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .errors import ApiError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_FILTER_LENGTH = 4096  # a name regex longer than this is refused (RabbitMQ's limit)

Item = dict[str, Any]
Columns = list[list[str]] | None  # None: all columns


def columns_of(request: Request) -> Columns:
    """The `columns` parameter: comma-separated, each a dotted path."""
    raw = request.query_params.get("columns")
    if raw is None:
        return None
    return [[part for part in column.split(".") if part]
            for column in raw.split(",") if column.strip(".")]


def select_columns(value: Any, columns: Columns) -> Any:
    """The value with only the wanted columns (nested dicts by dotted paths)."""
    if columns is None:
        return value
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            if any(column[0] == key for column in columns):
                out[key] = select_columns(sub, _descend(key, columns))
        return out
    if isinstance(value, list):
        return [select_columns(one, columns) for one in value]
    return value


def _descend(key: str, columns: list[list[str]]) -> Columns:
    below: list[list[str]] = []
    for column in columns:
        if column[0] != key:
            continue
        if len(column) == 1:
            return None  # the whole value
        below.append(column[1:])
    return below


# Erlang's term order, which RabbitMQ sorts by: number < atom < ... < list < binary;
# a missing field sorts as 0 (rabbit_mgmt_util:get_dotted_value)
def _sort_value(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (1, str(value).lower())  # true/false are atoms
    if isinstance(value, (int, float)):
        return (0, value)
    if value is None:
        return (1, "undefined")
    if isinstance(value, dict):
        return (3, sorted((k, _sort_value(v)) for k, v in value.items()))
    if isinstance(value, list):
        return (4, [_sort_value(v) for v in value])
    if isinstance(value, str):
        return (5, value.encode("utf-8", "surrogateescape"))
    return (6, str(value))


def _dotted(item: Any, path: str) -> Any:
    keys = [k for k in path.split(".") if k]
    value = item
    for i, key in enumerate(keys):
        default: Any = 0 if i == len(keys) - 1 else []
        value = value.get(key, default) if isinstance(value, dict) else default
    return value


def sort_items(items: list[Item], default_sort: Sequence[str], sort: str | None,
               reverse: bool) -> list[Item]:
    """RabbitMQ's sort_list: by `sort` (if given) then the default keys; `sort=` with an
    empty value keeps the default; reverse when asked."""
    keys = list(default_sort)
    if sort:
        keys = [sort] + [k for k in keys if k != sort]
    if not keys:
        ordered = list(items)
    else:
        ordered = sorted(items, key=lambda item: [_sort_value(_dotted(item, k)) for k in keys])
    if reverse:
        ordered.reverse()
    return ordered


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "Pagination parameters are invalid") from None


def _matches(name: Any, pattern: str, use_regex: bool, compiled: re.Pattern[str] | None) -> bool:
    if not isinstance(name, str):
        return False
    if use_regex:
        return compiled is not None and compiled.search(name) is not None
    return pattern.lower() in name.lower()


def paginate(request: Request, items: list[Item]) -> dict[str, Any] | None:
    """The paginated reply when `page` is given (items already sorted), else None."""
    page = _int_param(request, "page")
    page_size = _int_param(request, "page_size")
    name = request.query_params.get("name")
    use_regex = request.query_params.get("use_regex") == "true"
    if use_regex and name is not None and len(name) > MAX_FILTER_LENGTH:
        raise ApiError(400, "invalid_pagination_parameters", "name filter regex is too long")
    if page is None:
        return None
    if page_size is None:
        page_size_value = DEFAULT_PAGE_SIZE
        shown_size = "undefined"
    else:
        page_size_value = page_size
        shown_size = str(page_size)
    if page <= 0 or page_size_value <= 0 or page_size_value > MAX_PAGE_SIZE:
        raise ApiError(400, "invalid_pagination_parameters",
                       f"Invalid pagination parameters: page number {page}, "
                       f"page size {shown_size}")
    filtered = items
    if name:
        compiled = None
        if use_regex:
            try:
                compiled = re.compile(name, re.IGNORECASE)
            except re.error:
                compiled = None
        filtered = [item for item in items
                    if _matches(item.get("name"), name, use_regex, compiled)]
    offset = (page - 1) * page_size_value
    if offset > len(filtered):
        raise ApiError(400, "page_out_of_range",
                       f"Page out of range, page: {page} page size: {page_size_value}, "
                       f"len: {len(filtered)}")
    chunk = filtered[offset:offset + page_size_value]
    return {"total_count": len(items), "item_count": len(chunk),
            "filtered_count": len(filtered), "page": page, "page_size": page_size_value,
            "page_count": (len(filtered) + page_size_value - 1) // page_size_value,
            "items": chunk}


def reply_list(request: Request, items: list[Item],
               default_sort: Sequence[str] = ("vhost", "name"),
               paginated: bool = True) -> JSONResponse:
    """A list endpoint's reply: sort, (when `page` is given and the endpoint is paginated
    in RabbitMQ) the page, then columns (as RabbitMQ: sorting and the name filter see
    every field, whichever columns are shown)."""
    columns = columns_of(request)
    sort = request.query_params.get("sort") or None
    reverse = request.query_params.get("sort_reverse") == "true"
    ordered = sort_items(items, default_sort, sort, reverse)
    page = paginate(request, ordered) if paginated else None
    if page is None:
        return JSONResponse(ordered if columns is None else
                            [select_columns(item, columns) for item in ordered])
    if columns is not None:
        page["items"] = [select_columns(item, columns) for item in page["items"]]
    return JSONResponse(page)


def reply_item(request: Request, item: Item) -> JSONResponse:
    """A single object's reply, with `columns` applied."""
    return JSONResponse(select_columns(item, columns_of(request)))
