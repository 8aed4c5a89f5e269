# Sourced by the .ci scripts: apt_install_missing LABEL PKG... installs Debian packages
# (noninteractive; `apt-get update` only when the first try fails); no-op without PKG.
apt_install_missing() {
  local label="$1"
  shift
  [ "$#" -gt 0 ] || return 0
  echo "$label: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "$@" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq "$@" >&2
  fi
}
