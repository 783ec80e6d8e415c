# Sourced by bench/cluster/run.sh and pgwrite.sh: starts the private
# PostgreSQL 15 of a cluster bench (tests/fixtures/postgres.sh: initdb +
# pg_ctl in $1/pgstate, UNIX socket) with the settings both benches measure
# under, and defines pgdir, url, as_pg and psqlq for the caller.
pg_bench_start() {
	bash tests/fixtures/postgres.sh start "$1/pgstate" >/dev/null
	url=$(cat "$1/pgstate/postgres.url")
	pgdir=$(cat "$1/pgstate/postgres.dir")
	# PostgreSQL's own settings for a write-heavy load on this machine's memory
	psqlq "ALTER SYSTEM SET shared_buffers = '1GB'" >/dev/null
	psqlq "ALTER SYSTEM SET wal_buffers = '64MB'" >/dev/null
	psqlq "ALTER SYSTEM SET max_wal_size = '8GB'" >/dev/null
	psqlq "ALTER SYSTEM SET checkpoint_timeout = '30min'" >/dev/null
	local bindir
	bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
	as_pg "$bindir/pg_ctl" -D "$pgdir/data" -w restart -l "$pgdir/server.log" >/dev/null
}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psqlq() { psql -X -A -t -h "$pgdir" -U payguard -d payguard -c "$1"; }
