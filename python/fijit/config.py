"""AttentionConfig: one point of the attention configuration space.

Validation lives in C++; an invalid value raises ValueError with the same
message the C++ API and fi-opt print (naming the field, the value and what
is allowed). The keys and their types come from the C++ field table too
(`_fijit.config_schema`), so this module lists none of them.
"""
from types import MappingProxyType

from . import _fijit

# key -> {"type", "default", "allowed"}, in canonical order.
_SCHEMA = MappingProxyType({
    key: MappingProxyType({"type": type_, "default": default,
                           "allowed": tuple(allowed)})
    for key, type_, default, allowed in _fijit.config_schema()})

# A canonical value's text as a Python value, by the schema's type.
_FROM_TEXT = {"int": int, "float": float, "bool": lambda text: text == "true",
              "enum": str}


def _format(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parse(key, text):
    return _FROM_TEXT[_SCHEMA[key]["type"]](text)


class AttentionConfig:
    """Immutable, validated attention configuration.

    Keyword names are the canonical keys (``head_dim_qk``, ``mask``, ...);
    fields left out keep their defaults and zero tuning knobs are resolved
    to the target's defaults.
    """

    __slots__ = ("_text", "_fields", "_given")

    def __init__(self, **fields):
        # Field by field, never joined into one text: a value such as
        # mask="causal,head_dim_qk=64" is a bad mask, not two fields.
        canonical = _fijit.canonicalize_config_fields(
            [(k, _format(v)) for k, v in fields.items()])
        object.__setattr__(self, "_text", canonical)
        # What the caller chose; replace() re-resolves the defaults.
        object.__setattr__(self, "_given", dict(fields))
        object.__setattr__(self, "_fields", {
            k: _parse(k, v)
            for k, v in (item.split("=", 1) for item in canonical.split(","))
        })

    @staticmethod
    def schema():
        """Every key in canonical order: its value's ``type`` ("int",
        "float", "bool" or "enum"), its ``default`` as canonical text (0
        for a tuning knob: the target's default) and, for an enum, the
        values it accepts (``allowed``). The C++ parser reads the same
        table."""
        return _SCHEMA

    @classmethod
    def from_string(cls, text):
        """Parses the canonical ``key=value,...`` form (any subset of keys)."""
        fields = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(
                    f"malformed config item '{item}': expected key=value")
            key = key.strip()
            if key in fields:
                raise ValueError(f"config key '{key}' given twice")
            fields[key] = value.strip()
        return cls(**fields)

    def replace(self, **changes):
        """A copy with some fields changed."""
        return AttentionConfig(**{**self._given, **changes})

    def for_batch_of(self, mean_qo_len):
        """The config a batch prefill plan uses for requests averaging
        ``mean_qo_len`` query rows: with every tuning knob at its default,
        sm_90a and head dims up to 128 (one above 64), two warpgroups of
        128-key tiles from 128 rows on (causal: 1024); otherwise this
        config (its knobs resolved)."""
        return AttentionConfig.from_string(
            _fijit.plan_batch_prefill_config(self._text, int(mean_qo_len)))

    def to_dict(self):
        return dict(self._fields)

    def __getattr__(self, name):
        if name.startswith("_"):  # an unset slot (copy, unpickle) or dunder
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("AttentionConfig is immutable; use replace()")

    def __reduce__(self):
        return (AttentionConfig.from_string, (self._text,))

    def __str__(self):
        return self._text

    def __repr__(self):
        return f"AttentionConfig.from_string({self._text!r})"

    def __eq__(self, other):
        return isinstance(other, AttentionConfig) and self._text == other._text

    def __hash__(self):
        return hash(self._text)
