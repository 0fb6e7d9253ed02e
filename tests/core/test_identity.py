from trimloop.core.identity import canonical_json, sha256_of, version_identity


def test_canonical_json_is_order_free_and_drops_none():
    assert canonical_json({"b": 1, "a": {"y": None, "x": "é"}}) == '{"a":{"x":"é"},"b":1}'
    assert sha256_of({"a": 1, "b": 2}) == sha256_of({"b": 2, "a": 1})


def test_version_identity_depends_on_content_only():
    template = {"kind": "text", "text": "Hi {{x}}"}
    one = version_identity(template=template, model="m", params={"temperature": 0})
    two = version_identity(template=dict(reversed(template.items())), model="m", params={"temperature": 0, "stop": None})
    assert one == two and len(one) == 64
    assert one != version_identity(template=template, model="m2", params={"temperature": 0})
