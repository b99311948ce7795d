"""Install pip into this interpreter's environment from pip's wheel on PyPI (no ensurepip).

A wheel is a zip that Python can run: `python pip-X.whl/pip install pip-X.whl`.
"""
import json
import pathlib
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

INDEX = "https://pypi.org/pypi/pip/json"

release = json.load(urllib.request.urlopen(INDEX, timeout=60))
url = urllib.parse.urljoin(INDEX, next(f["url"] for f in release["urls"]       # may be relative
                                       if f["filename"].endswith(".whl")))
wheel = pathlib.Path(tempfile.mkdtemp()) / url.rsplit("/", 1)[1]
urllib.request.urlretrieve(url, wheel)
subprocess.check_call([sys.executable, f"{wheel}/pip", "install", "-q", str(wheel)])
