#!/usr/bin/env bash
# Makes the certificates the TLS tests use, in DIR, with the real openssl:
#   ca.pem / ca.key         a test CA
#   other-ca.pem            a CA that signed none of them
#   site.pem / site.key     "site.test" and "www.site.test", signed by the CA, with the CA in the chain file
#   api.pem / api.key       "api.test"
#   wild.pem / wild.key     "*.wild.test"
#   backend.pem / .key      "backend.test" and IP 127.0.0.1 (for TLS to backends)
#   expired.pem / .key      "old.test", valid until yesterday
#   mismatch.key            a key that belongs to no certificate
#   site2.pem / site2.key   "site.test" again, another key (a renewed certificate)
# All keys are ECDSA P-256.
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -days 30 -subj "/CN=fulcrum test CA" -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
key other-ca.key
openssl req -x509 -new -key other-ca.key -days 30 -subj "/CN=fulcrum other CA" -out other-ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null

# leaf NAME SAN DAYS_ARGS...: NAME.key and NAME.pem (the leaf, then the CA)
leaf() {
    local name=$1 san=$2
    shift 2
    key "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=${name}" -out "$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -extfile "$name.ext" \
        "$@" -out "$name.leaf" 2>/dev/null
    cat "$name.leaf" ca.pem >"$name.pem"
    rm -f "$name.csr" "$name.ext" "$name.leaf"
}

leaf site "DNS:site.test,DNS:www.site.test" -days 30
leaf site2 "DNS:site.test,DNS:www.site.test" -days 30
leaf api "DNS:api.test" -days 30
leaf wild "DNS:*.wild.test" -days 30
leaf backend "DNS:backend.test,IP:127.0.0.1" -days 30
# Valid from two days ago until yesterday: `openssl ca` takes both dates.
key expired.key
openssl req -new -key expired.key -subj "/CN=old.test" -out expired.csr 2>/dev/null
mkdir -p ca-db
: >ca-db/index.txt
cat >ca-db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = leaf
[any]
commonName = supplied
[leaf]
subjectAltName = DNS:old.test
basicConstraints = CA:FALSE
CNF
echo 1000 >ca-db/serial
openssl ca -batch -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
    -startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)" \
    -enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)" -notext -out expired.leaf 2>/dev/null
cat expired.leaf ca.pem >expired.pem
rm -rf ca-db expired.csr expired.leaf
key mismatch.key
