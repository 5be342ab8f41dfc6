"""The config schema: validation that fills in defaults and names the faulty key.

``workflow/schemas/config.schema.yaml`` describes every config key, its
type, its default and the conditions between keys (``if``/``then``). The
workflow validates the whole config with :func:`validate` before any job
runs; a node run by hand validates the config section it is given against
the matching definition (``$defs/decoding``, …), so it gets the same
defaults. A subschema may carry an ``errorMessage``: it replaces the
generic message of jsonschema when that subschema fails (e.g. to say which
new name an old key has).
"""

import copy
from functools import cache
from pathlib import Path

import yaml

from fmriflow.errors import InputError

#: The schema of the workflow this library belongs to.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


#: libyaml's safe loader where PyYAML was built with it: the schema is 1,400
#: lines, which the pure-Python loader takes 0.08 s to read in every job.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def load_schema(path=SCHEMA_PATH):
    """The schema as a dictionary (read once per process)."""
    return yaml.load(Path(path).read_text(), Loader=SAFE_LOADER)


def _default(subschema, root):
    """A property's default: its own, or that of the local definition it refers to."""
    while isinstance(subschema, dict):
        if "default" in subschema:
            return True, subschema["default"]
        reference = subschema.get("$ref", "")
        if not reference.startswith("#/$defs/"):
            break
        subschema = root["$defs"][reference.removeprefix("#/$defs/")]
    return False, None


def _validator_with_defaults(root):
    """A Draft 2020-12 validator of ``root`` that fills in ``default`` values as it goes."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                found, value = _default(subschema, root)
                if found:
                    instance.setdefault(name, copy.deepcopy(value))
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": properties_with_defaults})(root)


def key_path(parts, prefix=""):
    """A key path as users write it: ``decoding[0].cv.scheme``."""
    text = prefix
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _message(error):
    """The subschema's ``errorMessage`` if it has one, else jsonschema's message."""
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    return custom or error.message


def validate(instance, definition=None, where="", schema=None):
    """Check a config (or one section of it) and return a copy with the defaults filled in.

    Parameters
    ----------
    instance : dict
        The config, or one entry of a section (e.g. one decoding analysis).
    definition : str, optional
        Name of the ``$defs`` entry ``instance`` follows; None for the whole config.
    where : str
        Key path of ``instance`` in the config, for messages (e.g. ``decoding[0]``).
    schema : dict, optional
        The schema (default: :func:`load_schema`).

    Returns
    -------
    dict
        A deep copy of ``instance`` with every default filled in.

    Raises
    ------
    InputError
        Naming the key at fault, what is wrong, and where the allowed keys are.
    """
    from jsonschema.exceptions import best_match

    schema = load_schema() if schema is None else schema
    if definition is not None:
        schema = {"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}
    filled = copy.deepcopy(instance)
    error = best_match(_validator_with_defaults(schema).iter_errors(filled))
    if error is not None:
        raise InputError(
            f"Invalid config at '{key_path(error.absolute_path, where)}'",
            _message(error),
            "Allowed keys, types and defaults are in workflow/schemas/config.schema.yaml",
        )
    return filled
