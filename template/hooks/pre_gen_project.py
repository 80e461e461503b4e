"""cookiecutter's pre-generation hook: apply copier.yml's validators (hooks/answers.py).

On a bad answer it prints one message per broken rule and exits 1; cookiecutter then
removes the folder it had started, so nothing is left behind.
"""

import json
import sys
from pathlib import Path

# cookiecutter runs `cookiecutter <repo> --directory template`: the repository is one up.
sys.path.insert(0, str(Path({{ cookiecutter._repo_dir | tojson }}).resolve().parent / "hooks"))

import answers  # noqa: E402

errors = answers.validate(json.loads({{ cookiecutter | jsonify | tojson }}))
for message in errors:
    print(f"error: {message}", file=sys.stderr)
sys.exit(1 if errors else 0)
