"""Validate configs against the JSON Schema: config.example.yaml, every ```yaml block of the
README (complete configs, or fragments laid over config.example.yaml's top-level keys, as in
tests/readme.rs), and a few broken configs that must fail."""
import json
import re
import sys

import jsonschema
import yaml

schema_path, example_path, readme_path = sys.argv[1:4]
schema = json.load(open(schema_path))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)

docs = [(example_path, open(example_path).read())]
readme = open(readme_path).read()
for i, block in enumerate(re.findall(r"^```yaml\n(.*?)^```", readme, re.S | re.M)):
    docs.append((f"{readme_path} yaml block {i + 1}", block))

def complete(doc):
    """A README fragment (no `listen`) replaces only the top-level keys it names."""
    if "listen" in doc:
        return doc
    full = yaml.safe_load(open(example_path).read())
    full.update(doc)
    return full


failed = False
for name, text in docs:
    errors = sorted(validator.iter_errors(complete(yaml.safe_load(text))), key=str)
    for e in errors:
        failed = True
        print(f"{name}: {'/'.join(map(str, e.path))}: {e.message}")
    if not errors:
        print(f"ok  {name}")

base = yaml.safe_load(open(example_path).read())
broken = {
    "unknown top-level key": lambda c: c.update({"listne": "0.0.0.0:1"}),
    "unknown route key": lambda c: c["routes"][0].update({"methds": ["GET"]}),
    "bad auth value": lambda c: c["routes"][0].update({"auth": "off"}),
    "duration without unit": lambda c: c.update({"leeway": "30"}),
    "token_use missing": lambda c: c["issuers"][0].pop("token_use"),
}
for what, breakit in broken.items():
    doc = json.loads(json.dumps(base))
    breakit(doc)
    if validator.is_valid(doc):
        failed = True
        print(f"schema accepted a broken config: {what}")
    else:
        print(f"ok  rejects {what}")
sys.exit(1 if failed else 0)
