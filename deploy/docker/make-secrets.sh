#!/usr/bin/env bash
# Create the secret files deploy/docker-compose.yml reads, once, without overwriting any.
# The files stay on this machine: deploy/docker/secrets/.gitignore keeps them out of git.
set -euo pipefail
umask 077
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"

make() {  # make FILE COMMAND...: write the command's output to FILE unless it exists
  local file="$dir/$1"; shift
  if [[ -e "$file" ]]; then echo "kept    $file"; return; fi
  "$@" > "$file"
  chmod 600 "$file"
  echo "created $file"
}

random() { head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40; }

make site.key bash -c 'head -c 48 /dev/urandom | base64'
# The collector's Ed25519 event-signing key, and its public half (raw 32 bytes, base64)
# that the site-keys job registers with the workers.
make signing.pem openssl genpkey -algorithm ed25519
make signing.pub bash -c "openssl pkey -in '$dir/signing.pem' -pubout -outform DER | tail -c 32 | base64"
make postgres-password random
# libpq's password file for the evidence sink, with the same password as the database.
make pgpass bash -c "printf 'postgres:5432:postmarket:postmarket:%s\n' \"\$(cat '$dir/postgres-password')\""
make grafana-admin-password random

# Compose honours the uid/gid/mode of each secret where it can; where it bind-mounts the
# file as it is, the container user (uid 10001) must own the files it reads.
if [[ $(id -u) -eq 0 ]]; then
  chown 10001:10001 "$dir/site.key" "$dir/signing.pem" "$dir/signing.pub" "$dir/pgpass"
  chown 472:0 "$dir/grafana-admin-password"
fi
