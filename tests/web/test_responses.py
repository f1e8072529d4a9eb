"""What every answer of the web UI carries: the security headers (span content is untrusted, so no
inline or foreign script may run whatever slips through), and compression for large pages."""

from __future__ import annotations

import gzip
import re
from typing import Any


def test_every_answer_carries_the_security_headers(web: Any) -> None:
    for path in (
        "/traces",
        "/waste",
        "/trace/0123456789abcdef0123456789abcdef",
        "/static/app.css",
        "/health",
    ):
        response = web.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


def test_a_large_page_is_sent_compressed_when_asked(web: Any) -> None:
    plain = web.get("/traces", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content) > 2048
    with web.stream("GET", "/traces", headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        sent = b"".join(response.iter_raw())
    page = gzip.decompress(sent)
    assert len(sent) < len(page) * 0.6
    # the same page (but for the per-browser form token)
    assert _untokened(page.decode()) == _untokened(plain.text)


def _untokened(html: str) -> str:
    return re.sub(r'(name="csrf" content|name="csrf" value|X-CSRF-Token":\s*)"[^"]*"', "", html)
