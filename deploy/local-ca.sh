#!/usr/bin/env bash
# Makes what docker-compose.yml's secured configuration reads: a local test
# CA, server certificates signed by it, NATS passwords, intake's lookup
# secret and an example bearer token for each role. For a machine of your
# own, never for a province's network: there, the province's CA issues the
# certificates and its identity provider the tokens.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/local-ca.sh [--force] [OUT_DIR]

Writes into OUT_DIR [deploy/local, beside this script]:
  ca.pem, ca-key.pem              a test CA (EC P-256, 10 years)
  <name>.pem, <name>-key.pem      a server certificate for intake, projection
                                  and nats (825 days), each valid for its
                                  compose service name, localhost, 127.0.0.1
  nats-intake.password,           the NATS users' passwords, and nats.env
  nats-projection.password        which hands them to the nats container
  lookup.secret                   intake's secret for the slips' lookup codes
  tokens/<role>.token             an example bearer token of each role: clerk
                                  and office_manager of office TUYPHONG,
                                  province_reader and operator of province BTH
  tokens.toml                     those tokens' SHA-256 digests and identities
                                  (--auth-tokens)

Running it again keeps what exists (the CA, passwords, the lookup secret and
the tokens) and makes only what is missing; a server certificate is made
again when it is missing, not signed by the CA, or expires within 30 days.
--force makes everything anew (then every token and password changes, and
slips printed before no longer match their lookup codes).

Keys, passwords, the secret and the tokens are readable by their owner only.
Needs: openssl, coreutils.
EOF
}

force=false
out=""
while (($#)); do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --force) force=true ;;
        -*)
            echo "local-ca.sh: unknown option $1" >&2
            usage >&2
            exit 2
            ;;
        *)
            [[ -z "$out" ]] || {
                echo "local-ca.sh: one OUT_DIR only" >&2
                exit 2
            }
            out="$1"
            ;;
    esac
    shift
done
out="${out:-$(dirname "$0")/local}"

command -v openssl >/dev/null || {
    echo "local-ca.sh: openssl is not on the PATH" >&2
    exit 1
}

umask 077
mkdir -p "$out/tokens"

made=()
kept=()

# A new private key (EC P-256, PKCS#8 PEM).
new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 600 "$1"
}

# 32 random bytes, hex.
random_hex() {
    openssl rand -hex 32
}

# Whether $1 must be made: absent, or --force.
wanted() {
    [[ "$force" == true || ! -s "$1" ]]
}

# --- the CA -----------------------------------------------------------------
ca_new=false
if wanted "$out/ca.pem" || [[ ! -s "$out/ca-key.pem" ]]; then
    new_key "$out/ca-key.pem"
    openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days 3650 \
        -subj "/O=Motcua local test/CN=Motcua local test CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$out/ca.pem"
    chmod 644 "$out/ca.pem"
    ca_new=true
    made+=("ca.pem, ca-key.pem")
else
    kept+=("ca.pem")
fi

# --- server certificates ----------------------------------------------------
# Whether the certificate $1 is missing, not the CA's, or expires within 30 days.
stale() {
    [[ "$ca_new" == true || ! -s "$1" || ! -s "${1%.pem}-key.pem" ]] ||
        ! openssl verify -CAfile "$out/ca.pem" "$1" >/dev/null 2>&1 ||
        ! openssl x509 -in "$1" -noout -checkend $((30 * 86400)) >/dev/null
}

extensions=$(mktemp)
request=$(mktemp)
trap 'rm -f "$extensions" "$request"' EXIT

for name in intake projection nats; do
    cert="$out/$name.pem"
    key="$out/$name-key.pem"
    names="DNS:$name,DNS:localhost,IP:127.0.0.1"
    # NATS's certificate also serves the cluster profile's nodes, to clients
    # and to each other on their routes.
    [[ "$name" == nats ]] && names="$names,DNS:nats-1,DNS:nats-2,DNS:nats-3"
    # (A NATS certificate made before the cluster profile lacks its names.)
    if ! stale "$cert" && { [[ "$name" != nats ]] ||
        openssl x509 -in "$cert" -noout -ext subjectAltName 2>/dev/null | grep -q 'DNS:nats-3'; }; then
        kept+=("$name.pem")
        continue
    fi
    new_key "$key"
    openssl req -new -key "$key" -subj "/O=Motcua local test/CN=$name" -out "$request"
    cat >"$extensions" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$names
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl x509 -req -in "$request" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 825 \
        -extfile "$extensions" -out "$cert" 2>/dev/null
    chmod 644 "$cert"
    made+=("$name.pem, $name-key.pem")
done

# --- NATS passwords, the lookup secret --------------------------------------
for user in intake projection; do
    file="$out/nats-$user.password"
    if wanted "$file"; then
        # Letters first: nats-server reads an environment variable's value
        # as a configuration value, where bare digits would be a number.
        printf '%s-%s\n' "$user" "$(random_hex)" >"$file"
        chmod 600 "$file"
        made+=("nats-$user.password")
    else
        kept+=("nats-$user.password")
    fi
done
{
    echo "# For the nats container (docker-compose.yml's env_file); made by"
    echo "# deploy/local-ca.sh from nats-intake.password and nats-projection.password."
    echo "MOTCUA_NATS_INTAKE_PASSWORD=$(head -n 1 "$out/nats-intake.password")"
    echo "MOTCUA_NATS_PROJECTION_PASSWORD=$(head -n 1 "$out/nats-projection.password")"
} >"$out/nats.env"
chmod 600 "$out/nats.env"

# A random secret in $out/$1, kept when it exists (unless --force).
secret() {
    if wanted "$out/$1"; then
        random_hex >"$out/$1"
        chmod 600 "$out/$1"
        made+=("$1")
    else
        kept+=("$1")
    fi
}

secret lookup.secret

# --- example tokens ---------------------------------------------------------
# role subject province office
identities=(
    "clerk clerk-tuyphong BTH TUYPHONG"
    "office_manager manager-tuyphong BTH TUYPHONG"
    "province_reader reader-bth BTH -"
    "operator operator-bth BTH -"
)
tokens="$out/tokens.toml"
{
    echo "# Example bearer tokens for a machine of your own (deploy/local-ca.sh):"
    echo "# each token's SHA-256, and the identity it stands for. The tokens"
    echo "# themselves are in tokens/<role>.token."
} >"$tokens.new"
for identity in "${identities[@]}"; do
    read -r role subject province office <<<"$identity"
    file="$out/tokens/$role.token"
    secret "tokens/$role.token"
    digest=$(head -n 1 "$file" | tr -d '\n' | sha256sum | cut -d ' ' -f 1)
    {
        echo
        echo "[[token]]"
        echo "sha256 = \"$digest\""
        echo "subject = \"$subject\""
        echo "role = \"$role\""
        echo "province = \"$province\""
        [[ "$office" == - ]] || echo "office = \"$office\""
    } >>"$tokens.new"
done
chmod 644 "$tokens.new"
mv "$tokens.new" "$tokens"

# --- what was made ----------------------------------------------------------
echo "In $out:"
((${#made[@]} == 0)) || printf '  made  %s\n' "${made[@]}"
((${#kept[@]} == 0)) || printf '  kept  %s\n' "${kept[@]}"
echo "  wrote nats.env, tokens.toml"
cat <<EOF

docker-compose.yml reads deploy/local: docker compose up --build
A token with the motcua CLI, e.g. the clerk's (also office_manager,
province_reader, operator):
  motcua --token-file $out/tokens/clerk.token --ca $out/ca.pem \\
      --intake https://localhost:50051 --projection https://localhost:50052 report --office TUYPHONG
EOF
