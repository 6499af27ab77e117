"""HTML for an opted-out person: a script first in ``<head>`` and no analytics loaders.

:class:`HtmlRewriter` works on a stream of bytes. It holds back only what it must: the
start of the document until it knows where ``<head>`` opens (bounded), an unfinished
tag, and a ``<script>`` element until it is complete (bounded), so that a loader split
across chunks is still removed. Markup is ASCII in every charset the middleware
rewrites, so the bytes are read as Latin-1 (one character per byte) and written back
unchanged but for the edits.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["GA_ID", "HtmlRewriter", "disable_script", "find_ids", "head_script"]

logger = logging.getLogger("privguard.analytics")

#: A Google Analytics id in page text: GA4 measurement ids and Universal Analytics ids.
GA_ID: Final = re.compile(r"(?<![A-Za-z0-9-])(G-[A-Z0-9]{6,16}|UA-\d{4,10}-\d{1,4})(?![A-Za-z0-9])")
_MAX_IDS: Final = 64

#: What replaces a removed loader: says what happened, holds nothing of the page.
REMOVED_MARK: Final = "<!--privguard: analytics loader removed-->"

_CONSENT_DENIED: Final = (
    "{ad_storage:'denied',analytics_storage:'denied',ad_user_data:'denied',"
    "ad_personalization:'denied',functionality_storage:'denied',"
    "personalization_storage:'denied',security_storage:'denied'}"
)
# Sets window['ga-disable-<id>'] so that nothing on the page can set it back.
_OFF: Final = (
    "function(i){try{Object.defineProperty(w,'ga-disable-'+i,{value:!0,enumerable:!0})}catch(e){}}"
)


def find_ids(text: str) -> list[str]:
    """GA ids in ``text``, in order of appearance, without repeats (at most 64)."""
    found: dict[str, None] = {}
    for m in GA_ID.finditer(text):
        found.setdefault(m.group(1), None)
        if len(found) >= _MAX_IDS:
            break
    return list(found)


def _attr_nonce(nonce: str | None) -> str:
    return f' nonce="{nonce}"' if nonce else ""


def head_script(ids: Sequence[str], tokens: Sequence[str], nonce: str | None) -> str:
    """The script that goes first in ``<head>`` for an opted-out person.

    - ``window['ga-disable-<id>'] = true`` for each id (and for each id a later
      ``gtag('config', id)`` names), which gtag.js and analytics.js honour;
    - the global switch ``window._gaUserPrefs.ioo()`` (Google's opt-out add-on);
    - Consent Mode defaults, all ``denied``, with a ``dataLayer`` stub;
    - Mixpanel's own opt-out for each configured project token, and a stub that makes
      the Mixpanel snippet skip loading the library (and stands in for Adobe's
      ``s_gi`` when AppMeasurement was removed).

    Ids and tokens were validated (letters, digits, dashes): JSON is safe inline.
    No long digit runs: a redacting middleware after this one must find nothing.
    """
    js = (
        "(function(w,d){"
        f"var o={_OFF};"
        f"{json.dumps(list(ids))}.forEach(o);"
        "try{Object.defineProperty(w,'_gaUserPrefs',{value:Object.freeze("
        "{ioo:function(){return !0}}),enumerable:!0})}catch(e){}"
        "var l=w.dataLayer=w.dataLayer||[],p=l.push;"
        "l.push=function(){for(var k=0;k<arguments.length;k++){var a=arguments[k];"
        "if(a&&a[0]==='config'&&typeof a[1]==='string')o(a[1])}return p.apply(l,arguments)};"
        "if(typeof w.gtag!=='function')w.gtag=function(){l.push(arguments)};"
        f"w.gtag('consent','default',{_CONSENT_DENIED});"
        "w.gtag('set','ads_data_redaction',!0);"
        f"{json.dumps(list(tokens))}.forEach(function(t){{"
        "try{w.localStorage.setItem('__mp_opt_in_out_'+t,'0')}catch(e){}"
        "d.cookie='__mp_opt_in_out_'+t+'=0;path=/;max-age='+365*864e2+';samesite=lax'});"
        # A do-nothing object: the Mixpanel snippet sees __SV and loads nothing; page
        # code calling mixpanel.* or Adobe's s_gi(...) (whose library was removed) goes on.
        "if(typeof Proxy==='function'){var P,f=function(){return P};"
        "f.__SV=1.2;f.__loaded=!0;f.has_opted_out_tracking=function(){return !0};"
        "P=new Proxy(f,{get:function(t,k){return typeof k==='symbol'||k in t?t[k]:"
        "k==='then'?void 0:P}});if(!w.mixpanel)w.mixpanel=P;if(!w.s_gi)w.s_gi=f}"
        "})(window,document)"
    )
    return f"<script{_attr_nonce(nonce)}>{js}</script>"


def disable_script(ids: Iterable[str], nonce: str | None) -> str:
    """A small script setting ``ga-disable-<id>`` for ids met after ``<head>``."""
    return (
        f"<script{_attr_nonce(nonce)}>(function(w){{{json.dumps(list(ids))}.forEach({_OFF})}})"
        "(window)</script>"
    )


# -- the tokenizer, just enough of it ----------------------------------------------------------
_WS: Final = " \t\n\r\f"
_TAG_NAME: Final = re.compile(r"<([A-Za-z][A-Za-z0-9:-]*)")
_RAW_TEXT: Final = frozenset(
    {"style", "textarea", "title", "xmp", "noscript", "iframe", "noembed", "noframes"}
)
_ATTR: Final = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_NOT_CODE: Final = re.compile(r"json|importmap|speculationrules|template", re.I)
_HOLD_WORDS: Final = ("<!--", "<script", "</script")


def _tag_end(s: str, i: int) -> int:
    """Index just past the ``>`` that ends the tag whose attributes start at ``i``, or -1
    if the text ends first. Quotes count only where an attribute value starts."""
    n = len(s)
    while i < n:
        c = s[i]
        if c == ">":
            return i + 1
        if c == "=":
            i += 1
            while i < n and s[i] in _WS:
                i += 1
            if i >= n:
                return -1
            if s[i] in "\"'":
                j = s.find(s[i], i + 1)
                if j < 0:
                    return -1
                i = j + 1
            continue
        i += 1
    return -1


def _attrs(tag: str) -> dict[str, str]:
    m = _TAG_NAME.match(tag)
    start = m.end() if m else 1
    out: dict[str, str] = {}
    for a in _ATTR.finditer(tag, start, len(tag) - 1):
        name = a.group(1).lower()
        value = a.group(2) if a.group(2) is not None else a.group(3) or a.group(4) or ""
        out.setdefault(name, value)
    return out


_PRE, _BODY, _COMMENT, _RAW, _SCRIPT, _SCRIPT_PASS = range(6)


class HtmlRewriter:
    """Rewrites one HTML document for an opted-out person, chunk by chunk.

    >>> rw = HtmlRewriter(ids=["G-ABC123"], tokens=(), loaders=LOADER_PATTERNS)
    >>> rw.feed(b"<html><head><script src='https://www.googletagmanager.com/gtag/js'>")
    ... + rw.finish()
    """

    def __init__(
        self,
        *,
        ids: Iterable[str] = (),
        tokens: Sequence[str] = (),
        loaders: Sequence[re.Pattern[str]] = (),
        nonce: str | None = None,
        inject: bool = True,
        max_head_scan: int = 64 * 1024,
        max_script: int = 512 * 1024,
    ) -> None:
        self.ids = list(dict.fromkeys(ids))
        self.tokens = tuple(tokens)
        self.loaders = tuple(loaders)
        self.nonce = nonce
        self.inject = inject
        self.max_head_scan = max_head_scan
        self.max_script = max_script
        self.disabled: set[str] = set(self.ids)
        self.removed = 0
        self.state = _PRE
        self.raw_end = ""
        self.buf = ""

    # -- public ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self.buf += data.decode("latin-1")
        return self._run(final=False).encode("latin-1")

    def finish(self) -> bytes:
        return self._run(final=True).encode("latin-1")

    def rewrite(self, data: bytes) -> bytes:
        """A whole document at once: every id in it is disabled by the head script."""
        self.ids = list(dict.fromkeys([*self.ids, *find_ids(data.decode("latin-1"))]))
        self.disabled.update(self.ids)
        return self.feed(data) + self.finish()

    # -- the machine ---------------------------------------------------------------------------
    def _run(self, *, final: bool) -> str:
        out: list[str] = []
        while True:
            state = self.state
            if state == _PRE:
                progressed = self._pre(out, final)
            elif state == _BODY:
                progressed = self._body(out, final)
            elif state == _SCRIPT:
                progressed = self._script(out, final)
            else:  # comment, raw text, a script too long to hold
                progressed = self._until_end(out, final)
            if not progressed:
                break
        if final and self.buf:
            out.append(self.buf)
            self.buf = ""
        return "".join(out)

    def _head(self) -> str:
        return head_script(self.ids, self.tokens, self.nonce) if self.inject else ""

    def _pre(self, out: list[str], final: bool) -> bool:
        """Before ``<head>``: skip what may precede it, then put the script in."""
        s = self.buf
        n = len(s)
        i = 3 if s.startswith("\xef\xbb\xbf") else 0  # a UTF-8 byte order mark
        point = head_end = -1
        while True:
            while i < n and s[i] in _WS:
                i += 1
            if i >= n:
                break
            if s.startswith("<!--", i):
                j = s.find("-->", i + 4)
                if j < 0:
                    break
                i = j + 3
                continue
            if s.startswith("<!", i) or s.startswith("<?", i):
                j = s.find(">", i)
                if j < 0:
                    break
                i = j + 1
                continue
            m = _TAG_NAME.match(s, i)
            if m is None:
                if not (s[i] == "<" and i + 1 >= n):
                    point = i  # text, or a stray "<": the head has begun implicitly
                break
            if m.end() >= n:
                break  # the name may go on
            name = m.group(1).lower()
            if name not in ("html", "head"):
                point = i
                break
            end = _tag_end(s, m.end())
            if end < 0:
                break
            i = end
            if name == "head":
                head_end = end
                point = self._after_charset_meta(s, end, final)
                break
        if point < 0:
            if not final and n <= self.max_head_scan:
                return False
            # Undecided at the bound or at the end: the script goes where we got to.
            point = head_end if head_end >= 0 else min(i, n)
        out.append(s[:point])
        out.append(self._head())
        self.buf = s[point:]
        self.state = _BODY
        return True

    @staticmethod
    def _after_charset_meta(s: str, i: int, final: bool) -> int:
        """Where to inject after ``<head>``: past a ``<meta charset>`` that follows it, so
        that the encoding declaration stays within the first 1024 bytes."""
        n = len(s)
        j = i
        while j < n and s[j] in _WS:
            j += 1
        if j >= n:
            return i if final else -1
        m = _TAG_NAME.match(s, j)
        if m is not None and m.end() >= n and not final:
            return -1  # the name may go on
        if m is None or m.group(1).lower() != "meta":
            if m is None and s[j] == "<" and j + 1 >= n and not final:
                return -1
            return i
        end = _tag_end(s, m.end())
        if end < 0:
            return i if final else -1
        attrs = _attrs(s[j:end])
        if "charset" in attrs or attrs.get("http-equiv", "").lower() == "content-type":
            return end
        return i

    def _body(self, out: list[str], final: bool) -> bool:
        s = self.buf
        i = s.find("<")
        if i < 0:
            out.append(s)
            self.buf = ""
            return False
        if i:
            out.append(s[:i])
            s = self.buf = s[i:]
        if s.startswith("<!--"):
            out.append("<!--")
            self.buf = s[4:]
            self.state, self.raw_end = _COMMENT, "-->"
            return True
        m = _TAG_NAME.match(s)
        if m is None:
            if len(s) < 4 and not final and any(w.startswith(s) for w in _HOLD_WORDS):
                return False
            out.append("<")
            self.buf = s[1:]
            return True
        if m.end() >= len(s) and not final:
            return False  # the tag name may go on
        name = m.group(1).lower()
        end = _tag_end(s, m.end())
        if end < 0:
            if final or len(s) > self.max_script:
                out.append(s)
                self.buf = ""
                return False
            return False
        if name == "script":
            self.state = _SCRIPT
            return True
        out.append(s[:end])
        self.buf = s[end:]
        if name in _RAW_TEXT:  # "<title/>" opens it too: HTML has no self-closing tags
            self.state, self.raw_end = _RAW, "</" + name
        return True

    def _until_end(self, out: list[str], final: bool) -> bool:
        """Pass text through to the end of a comment or raw-text element."""
        s = self.buf
        end = self.raw_end
        j = s.lower().find(end) if self.state != _COMMENT else s.find(end)
        if j < 0:
            keep = 0 if final else len(end) - 1
            cut = max(0, len(s) - keep)
            out.append(s[:cut])
            self.buf = s[cut:]
            return False
        if self.state == _COMMENT:
            out.append(s[: j + len(end)])
            self.buf = s[j + len(end) :]
        else:  # the end tag itself is passed by _body
            out.append(s[:j])
            self.buf = s[j:]
        self.state = _BODY
        return True

    def _script(self, out: list[str], final: bool) -> bool:
        """A whole ``<script>`` element is in the buffer, or wait for it (bounded)."""
        s = self.buf
        m = _TAG_NAME.match(s)
        assert m is not None  # _body saw it
        open_end = _tag_end(s, m.end())
        close = s.lower().find("</script", open_end)
        close_end = -1
        if close >= 0:
            close_end = s.find(">", close)
        if close_end < 0:
            if final:
                out.append(self._element(s[:open_end], s[open_end:], ""))
                self.buf = ""
                self.state = _BODY
                return False
            if len(s) > self.max_script:
                # Too long to hold: it goes out unread (the CSP still stands).
                logger.warning("privguard: a script element over max_script passed unread")
                ids = [i for i in find_ids(s) if i not in self.disabled]
                if ids and self.inject:
                    out.append(disable_script(ids, self.nonce))
                    self.disabled.update(ids)
                out.append(s)
                self.buf = ""
                self.state, self.raw_end = _SCRIPT_PASS, "</script"
            return False
        out.append(self._element(s[:open_end], s[open_end:close], s[close : close_end + 1]))
        self.buf = s[close_end + 1 :]
        self.state = _BODY
        return True

    def _element(self, open_tag: str, content: str, close_tag: str) -> str:
        attrs = _attrs(open_tag)
        urls = " ".join(v for k, v in attrs.items() if k in ("src", "data-src") or "src" in k)
        code = not _NOT_CODE.search(attrs.get("type", ""))
        loader = any(p.search(urls) for p in self.loaders) or (
            code and bool(content) and any(p.search(content) for p in self.loaders)
        )
        prefix = ""
        if self.inject:
            ids = [i for i in find_ids(open_tag + content) if i not in self.disabled]
            if ids:
                prefix = disable_script(ids, self.nonce)
                self.disabled.update(ids)
        if loader:
            self.removed += 1
            return prefix + REMOVED_MARK
        return prefix + open_tag + content + close_tag
