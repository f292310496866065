# Sourced by the deploy scripts: a Python venv with the pinned deploy tools (hadolint,
# kubernetes-validate, PyYAML), cached outside the repo and rebuilt only when requirements.txt
# changes. Sets DEPLOY_PY and DEPLOY_BIN.
_deploy_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_deploy_cache="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
_deploy_req="$_deploy_here/requirements.txt"
_deploy_stamp="$(sha256sum "$_deploy_req" | cut -c1-16)"
DEPLOY_VENV="$_deploy_cache/deploy-venv-$_deploy_stamp"
if [ ! -x "$DEPLOY_VENV/bin/hadolint" ] || [ ! -f "$DEPLOY_VENV/.complete" ]; then
  echo "== installing deploy tools into $DEPLOY_VENV"
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv >&2
    fi
  fi
  rm -rf "$DEPLOY_VENV"
  mkdir -p "$_deploy_cache"
  python3 -m venv "$DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check -r "$_deploy_req"
  touch "$DEPLOY_VENV/.complete"
fi
DEPLOY_PY="$DEPLOY_VENV/bin/python"
DEPLOY_BIN="$DEPLOY_VENV/bin"
