"""Parsing Canonical Form and CRC-64-AVRO fingerprints against the Avro spec's test vectors."""

from __future__ import annotations

import json

import pytest

from flowship.errors import SchemaError
from flowship.schema import canonical_form, fingerprint, fingerprint_hex

# (input, canonical form, fingerprint as Java's signed long), from apache/avro
# share/test/data/schema-tests.txt (vector 026 has "default":"true", a string, which fastavro
# rightly rejects for a boolean field; here it is true -- the canonical form drops it anyway)
VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('{"type":"null"}', '"null"', 7195948357588979594),
    ('"boolean"', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('"long"', '"long"', -3434872931120570953),
    ('"float"', '"float"', 5583340709985441680),
    ('"double"', '"double"', -8181574048448539266),
    ('"bytes"', '"bytes"', 5746618253357095269),
    ('"string"', '"string"', -8142146995180207161),
    ('[ "int" , {"type":"boolean"} ]', '["int","boolean"]', 5392556393470105090),
    ('{"fields":[], "type":"record", "name":"foo"}',
     '{"name":"foo","type":"record","fields":[]}', -4824392279771201922),
    ('{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
     '{"name":"x.y.foo","type":"record","fields":[]}', 5916914534497305771),
    ('{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}',
     '{"name":"a.b.foo","type":"record","fields":[]}', -4616218487480524110),
    ('{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}',
     '{"name":"foo","type":"record","fields":[]}', -4824392279771201922),
    ('{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},'
     ' {"order":"descending","name":"f2","doc":"Hello","type":"int"}],'
     ' "type":"record", "name":"foo"}',
     '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},'
     '{"name":"f2","type":"int"}]}', -4860222112080293046),
    ('{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
     '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}', -4448647247586288245),
    ('{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}',
     '{"name":"x.y.z.foo","type":"fixed","size":32}', -3064184465700546786),
    ('{ "items":{"type":"null"}, "type":"array"}', '{"type":"array","items":"null"}',
     -589620603366471059),
    ('{ "values":"string", "type":"map"}', '{"type":"map","values":"string"}',
     -8732877298790414990),
    ('{"name":"PigValue","type":"record",'
     ' "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
     '{"name":"PigValue","type":"record","fields":[{"name":"value","type":'
     '["null","int","long","PigValue"]}]}', -1759257747318642341),
]

EMPTY = 0xC15D213AA4D7A795


def rabin(data: bytes) -> int:
    """The spec's CRC-64-AVRO, written out as in the specification."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize(("text", "canonical", "signed"), VECTORS)
def test_spec_vectors(text: str, canonical: str, signed: int) -> None:
    assert canonical_form(text) == canonical
    assert fingerprint(text) == signed & 0xFFFF_FFFF_FFFF_FFFF
    assert fingerprint(text) == rabin(canonical.encode())
    assert fingerprint_hex(text) == f"{signed & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def test_dict_input_and_what_the_canonical_form_ignores() -> None:
    base = {"type": "record", "name": "R", "fields": [{"name": "t", "type": "long"}]}
    annotated = {"type": "record", "name": "R", "doc": "d", "aliases": ["Q"], "fields": [
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"},
         "default": 0}]}
    renamed = json.loads(json.dumps(base).replace('"t"', '"u"'))
    assert fingerprint(base) == fingerprint(json.dumps(base)) == fingerprint(annotated)
    assert fingerprint(base) != fingerprint(renamed)
    assert fingerprint(base) == rabin(canonical_form(base).encode())


def test_bad_schema_raises() -> None:
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        fingerprint({"type": "record", "name": "R"})
