"""Plain JSON values <-> google.protobuf Struct / Value, shared by the gRPC client and server.

protobuf numbers are doubles: a whole number within 2**53 comes back as an ``int`` so a context or
a variant value round-trips to what the same JSON gives over REST (``3`` stays ``3``, ``true``
never becomes ``1``). Faster than ``json_format`` (no descriptor walk) and never raises on
NaN / infinity (they arrive as floats).
"""

from google.protobuf import struct_pb2

MAX_SAFE_INTEGER = 2**53
NULL = struct_pb2.NULL_VALUE


def _number(number):
    if number.is_integer() and -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return int(number)
    return number


def value_to_python(value, depth=0, max_depth=32):
    """A google.protobuf.Value as a plain Python value. Raises ValueError past max_depth."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        return _number(value.number_value)
    if kind == "struct_value":
        return struct_to_dict(value.struct_value, depth + 1, max_depth)
    if kind == "list_value":
        if depth >= max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        return [value_to_python(item, depth + 1, max_depth) for item in value.list_value.values]
    return None  # null_value, or unset


def struct_to_dict(struct, depth=0, max_depth=32):
    if depth >= max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return {key: value_to_python(item, depth, max_depth) for key, item in struct.fields.items()}


def fill_value(target, obj):
    """Set a google.protobuf.Value message in place from a JSON-like Python value."""
    if obj is None:
        target.null_value = NULL
    elif obj is True or obj is False:
        target.bool_value = obj
    elif isinstance(obj, str):
        target.string_value = obj
    elif isinstance(obj, (int, float)):
        target.number_value = obj
    elif isinstance(obj, dict):
        target.struct_value.SetInParent()  # an empty {} must still set the oneof
        fill_struct(target.struct_value, obj)
    elif isinstance(obj, (list, tuple)):
        target.list_value.SetInParent()
        values = target.list_value.values
        for item in obj:
            fill_value(values.add(), item)
    else:
        target.string_value = str(obj)


def fill_struct(target, mapping):
    """Set a google.protobuf.Struct message in place from a dict with string keys."""
    fields = target.fields
    for key, item in mapping.items():
        fill_value(fields[str(key)], item)
    return target


def to_struct(mapping):
    return fill_struct(struct_pb2.Struct(), mapping or {})
