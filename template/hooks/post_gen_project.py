"""cookiecutter's (and cruft's) post-generation hook: a folder whose files the answers all
left out (their names rendered empty) goes, as copier's `_exclude` leaves it out (copier.yml)."""

{% if not cookiecutter.notebook %}
import os

os.rmdir("notebooks")  # notebook: no
{% endif %}
