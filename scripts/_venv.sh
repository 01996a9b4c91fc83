# shellcheck shell=bash
# Shared set-up for scripts/test and scripts/serve. Source it from the repo root.
#   ensure_debs PKG...   install the Debian packages that are not installed yet
#   ensure_venv [EXTRA]  create/refresh .venv with mfad installed (editable), with the
#                        optional dependencies EXTRA ("test") or the runtime ones only

# Run a command as root (directly, or through sudo when there is one).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "error: '$*' needs root and sudo is not installed" >&2
        return 1
    fi
}

deb_installed() {
    # "ii" = installed; a removed package whose config files remain is "rc".
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

ensure_debs() {
    local missing=() pkg rc=0 policy=/usr/sbin/policy-rc.d own_policy=
    for pkg in "$@"; do
        deb_installed "$pkg" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || {
        echo "error: missing packages (${missing[*]}) and no apt-get to install them" >&2
        return 1
    }
    echo ">> installing Debian packages: ${missing[*]}"
    # Keep package scripts from starting the daemons they ship: the tests run their
    # own freeradius (a system one would hold UDP 1812, mfad's port) and this
    # script starts PostgreSQL itself. Only when no policy is in place already.
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null &&
            as_root chmod 755 "$policy" && own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get -o DPkg::Lock::Timeout=600 update -q &&
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    [ -n "$own_policy" ] && as_root rm -f "$policy"
    if [ $rc -ne 0 ]; then
        echo "error: apt-get install ${missing[*]} failed (exit $rc)" >&2
        return $rc
    fi
    # On a systemd host the freeradius unit is still enabled for the next boot.
    if [[ " ${missing[*]} " == *" freeradius "* ]] && [ -d /run/systemd/system ]; then
        as_root systemctl disable --quiet freeradius.service 2>/dev/null || true
    fi
}

# Runs in a subshell so that the lock (fd 8) is released however it returns.
ensure_venv() (
    venv=.venv
    extra=${1:-}
    stamp=.venv/.mfad-installed
    # A bare Debian 12 has no python3, and no ensurepip without python3-venv.
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        ensure_debs python3 python3-venv || exit 1
    fi
    # Serialise concurrent set-ups (e.g. scripts/serve and scripts/test at once);
    # pyproject.toml is always there, so it doubles as the lock file.
    exec 8<pyproject.toml
    flock 8
    # A venv whose interpreter went away (base Python removed or moved) is rebuilt.
    if [ -d "$venv" ] && ! "$venv/bin/python" -c '' 2>/dev/null; then
        echo ">> $venv is broken; recreating it"
        rm -rf "$venv"
    fi
    if [ ! -d "$venv" ]; then
        echo ">> creating $venv"
        python3 -m venv "$venv" || { echo "error: python3 -m venv $venv failed" >&2; exit 1; }
    fi
    # The stamp holds pyproject.toml's hash and the extra installed with it. Reinstall
    # only when pyproject.toml (dependencies, entry points) changed or the extra is
    # missing; a venv with the test extra also serves the runtime-only caller.
    hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
    read -r have_hash have_extra 2>/dev/null <"$stamp" || true
    if [ "${have_hash:-}" != "$hash" ] || { [ -n "$extra" ] && [ "${have_extra:-}" != "$extra" ]; }; then
        target=.${extra:+[$extra]}
        echo ">> installing mfad${extra:+ and its $extra dependencies} into $venv"
        "$venv/bin/python" -m pip install -q -e "$target" ||
            { echo "error: pip install -e '$target' into $venv failed" >&2; exit 1; }
        echo "$hash $extra" >"$stamp"
    fi
)
