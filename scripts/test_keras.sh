#!/usr/bin/env bash
# Run the Keras / SavedModel teacher tests in .venv-keras: a venv that layers tensorflow-cpu (the
# `keras` extra) over .venv's packages. Kept apart from .venv because coremltools imports
# TensorFlow whenever it is installed, which slows every Core ML build and test.
# Needs .venv (scripts/bootstrap.sh). Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x .venv/bin/python ] || { echo "error: .venv is missing; run scripts/bootstrap.sh first" >&2; exit 1; }
python="${PYTHON:-python3.11}"
if [ ! -x .venv-keras/bin/python ]; then
    "$python" -m venv .venv-keras
fi
main_site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
keras_site="$(.venv-keras/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# A .pth line that runs site.addsitedir also processes .venv's own .pth files (the editable
# edgepack install among them).
echo "import site; site.addsitedir('$main_site')" > "$keras_site/zz_edgepack_main.pth"
pin="$(sed -n 's/^ *\(tensorflow-cpu==[0-9.]*\)$/\1/p' setup.cfg)"
.venv-keras/bin/python -c 'import tensorflow' 2>/dev/null \
    || .venv-keras/bin/pip install --quiet --disable-pip-version-check "$pin"
.venv-keras/bin/python -m pytest tests/test_teachers.py -k "keras or saved_model or savedmodel or tensorflow" "$@"
