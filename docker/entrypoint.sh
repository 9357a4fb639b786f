#!/bin/sh
# Container entrypoint: the broker replaces this shell (exec) so it receives SIGTERM from `docker stop`.
# Arguments are broker flags, e.g. `docker run IMAGE --log-level debug`; AMQP_BROKER_* variables also apply.
set -eu
exec amqp-broker "$@"
