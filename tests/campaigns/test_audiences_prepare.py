"""The import's per-row encoding shortcuts give exactly what the plain calls gave."""
import json

from hypothesis import given
from hypothesis import strategies as st

from campaigns.audiences import EVIDENCE_KEYS, _evidence_values, _json_object
from campaigns.csvparse import ContactRow

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(pairs=st.dictionaries(TEXT, TEXT, max_size=6))
def test_attributes_encode_as_json_dumps_did(pairs):
    encoded = _json_object(tuple(pairs)).encode(pairs.values())
    assert encoded == json.dumps(pairs, ensure_ascii=False).encode()


@given(phone=TEXT, consent=st.sampled_from(["granted", "revoked"]), source=TEXT, date=TEXT,
       line=st.integers(min_value=1, max_value=10**9), shared=st.tuples(TEXT, TEXT, TEXT, TEXT))
def test_evidence_encodes_as_json_dumps_of_the_evidence_dict(phone, consent, source, date,
                                                             line, shared):
    row = ContactRow(line, phone, "", {}, consent, source or None, date or None, "individual")
    uploaded_at, filename, uploader, consent_text = shared
    expected = {"statement": f"consent column: {consent}", "address": phone,
                "channel": "import", "source": source, "consent_date": date,
                "date_source": "file" if date else "upload", "uploaded_at": uploaded_at,
                "file": filename, "row": line, "uploader": uploader}
    if consent_text:
        expected["consent_text"] = consent_text
    keys = EVIDENCE_KEYS + (("consent_text",) if consent_text else ())
    encoded = _json_object(keys).encode(_evidence_values(row, shared))
    assert encoded == json.dumps(expected, ensure_ascii=False).encode()
