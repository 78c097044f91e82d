#!/usr/bin/env bash
# .ci/postgres.sh: start (or reuse) a throwaway PostgreSQL cluster for Hodei's
# tests and benchmarks, listening on 127.0.0.1 only.
#
# Usage:
#   eval "$(bash .ci/postgres.sh)"        # start if needed, export HODEI_TEST_POSTGRES_DSN
#   bash .ci/postgres.sh start            # same; prints the export line on stdout
#   bash .ci/postgres.sh env              # print the export line of a running cluster
#   bash .ci/postgres.sh status           # exit 0 when the cluster runs
#   bash .ci/postgres.sh stop             # stop the cluster (keeps its files)
#   bash .ci/postgres.sh destroy          # stop and delete the cluster directory
#
# Settings (environment):
#   HODEI_PG_DIR   cluster directory (default /tmp/hodei-pg); data in $HODEI_PG_DIR/data
#   HODEI_PG_PORT  first port to try (default 5433); the next free one is used if taken
#
# The script is idempotent: run it as often as you like. As root it installs
# Debian's postgresql package when initdb/pg_ctl are missing and runs the
# server as the postgres user; as another user it runs the server as that user.
# The DSN names the superuser "postgres" and the database "hodei_test"; tests
# create and drop their own databases through it. The export line is also
# written to $HODEI_PG_DIR/env, so `. /tmp/hodei-pg/env` works in other shells.
# Only stdout carries the export line: progress goes to stderr.
set -euo pipefail

PGDIR=${HODEI_PG_DIR:-/tmp/hodei-pg}
DATA=$PGDIR/data
BASE_PORT=${HODEI_PG_PORT:-5433}
DB=hodei_test
SUPERUSER=postgres
PASSWORD=hodei

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
			echo "$d"
		fi
	done | sort -V | tail -n 1
}

install_postgres() {
	if [[ $(id -u) -ne 0 ]]; then
		log "initdb/pg_ctl not found and not root: install Debian's postgresql package first"
		exit 1
	fi
	log "installing Debian's postgresql package"
	# Do not let the package create and start its own cluster on 5432.
	mkdir -p /etc/postgresql-common
	if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql >&2
}

# as_owner runs a command as the cluster's owner.
as_owner() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running_port() {
	# Line 4 of postmaster.pid is the port of a running server.
	if [[ -f $DATA/postmaster.pid ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
		sed -n 4p "$DATA/postmaster.pid"
		return 0
	fi
	return 1
}

dsn_for() {
	echo "postgres://$SUPERUSER:$PASSWORD@127.0.0.1:$1/$DB?sslmode=disable"
}

write_env() {
	local line="export HODEI_TEST_POSTGRES_DSN='$(dsn_for "$1")'"
	echo "$line" >"$PGDIR/env"
	chmod 644 "$PGDIR/env"
	echo "$line"
}

BIN=$(find_bindir)
cmd=${1:-start}

case $cmd in
status)
	[[ -n $BIN ]] && running_port >/dev/null
	exit $?
	;;
env)
	if [[ -n $BIN ]] && port=$(running_port); then
		write_env "$port"
		exit 0
	fi
	log "no cluster runs in $DATA"
	exit 1
	;;
stop | destroy)
	if [[ -n $BIN && -f $DATA/postmaster.pid ]]; then
		as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
	fi
	if [[ $cmd == destroy ]]; then
		rm -rf "$PGDIR"
	fi
	exit 0
	;;
start) ;;
*)
	log "unknown command $cmd (want start, env, status, stop or destroy)"
	exit 2
	;;
esac

if [[ -z $BIN ]]; then
	install_postgres
	BIN=$(find_bindir)
	if [[ -z $BIN ]]; then
		log "postgresql installed but no initdb found under /usr/lib/postgresql"
		exit 1
	fi
fi

mkdir -p "$PGDIR"
if [[ $(id -u) -eq 0 ]]; then
	chown postgres:postgres "$PGDIR"
	chmod 755 "$PGDIR"
fi

if [[ ! -f $DATA/PG_VERSION ]]; then
	log "creating cluster in $DATA"
	pwfile=$(mktemp)
	echo "$PASSWORD" >"$pwfile"
	chmod 644 "$pwfile"
	as_owner "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --pwfile="$pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2
	rm -f "$pwfile"
	# Loopback only; the socket lives in the cluster directory so that no
	# system directory is needed. fsync and synchronous_commit stay on: the
	# benchmarks measure durable commits.
	cat >>"$DATA/postgresql.conf" <<EOF

# --- hodei .ci/postgres.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDIR'
max_connections = 300
shared_buffers = 512MB
wal_buffers = 16MB
max_wal_size = 4GB
checkpoint_timeout = 15min
fsync = on
synchronous_commit = on
full_page_writes = on
log_min_messages = warning
log_min_error_statement = panic
EOF
fi

if port=$(running_port); then
	log "cluster already running on 127.0.0.1:$port"
else
	port=$BASE_PORT
	while port_in_use "$port"; do
		port=$((port + 1))
		if ((port > BASE_PORT + 100)); then
			log "no free port in $BASE_PORT..$((BASE_PORT + 100))"
			exit 1
		fi
	done
	rm -f "$DATA/postmaster.pid"
	log "starting cluster on 127.0.0.1:$port"
	as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -o "-p $port" -w -t 60 start >&2
fi

# Create the test database (the superuser may connect over the socket without a password).
if ! as_owner "$BIN/psql" -h "$PGDIR" -p "$port" -U "$SUPERUSER" -d postgres -tAc \
	"SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
	as_owner "$BIN/psql" -h "$PGDIR" -p "$port" -U "$SUPERUSER" -d postgres -qc "CREATE DATABASE $DB" >&2
fi

write_env "$port"
