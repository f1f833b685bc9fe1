"""The orthancteam/orthanc stand-in's entry point: /etc/orthanc's JSON files, plus what the
environment asks for, merged into one configuration folder for Debian's Orthanc."""
import json
import os
import re
import shutil
from pathlib import Path

out = Path("/run/orthanc-config")
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
for path in sorted(Path("/etc/orthanc").glob("*.json")):
    shutil.copy(path, out / path.name)
extra: dict[str, object] = {"Plugins": []}
if os.environ.get("DICOM_WEB_PLUGIN_ENABLED", "").lower() == "true":
    extra["Plugins"] = ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]
for name, value in os.environ.items():
    if name.startswith("ORTHANC__"):  # ORTHANC__REGISTERED_USERS -> RegisteredUsers
        words = name.removeprefix("ORTHANC__").split("_")
        key = "".join(w.capitalize() for w in words)
        extra[key] = json.loads(value) if re.match(r"\s*[\[{\"0-9tfn]", value) else value
(out / "zz-environment.json").write_text(json.dumps(extra))
os.execvp("Orthanc", ["Orthanc", str(out)])
