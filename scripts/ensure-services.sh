#!/usr/bin/env bash
# Start the loopback services the tests use when one is down (each line below is the recipe).
set -u
up() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; echo "service on port $1 did not start" >&2; return 1; }

if ! up 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_port 5432
fi
if ! up 3306; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port 3306 || true
fi
if ! up 6379; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 || true
fi
if ! up 5672; then
  rabbitmq-server -detached
  wait_port 5672 || true
fi
if ! up 1883; then
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_port 1883 || true
fi
if ! up 4222; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 || true
fi
# docs/operations.md's key recipe reads the CLI's JSON with jq (its test runs the recipe).
if ! command -v jq >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -q jq || { $sudo apt-get update -q && $sudo apt-get install -y -q jq; }
fi
exit 0
