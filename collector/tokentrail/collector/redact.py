"""Redaction at ingest: secrets, card numbers and, when asked, e-mail addresses are replaced by
`[REDACTED:<rule>]` before anything is stored.

The flatten stage (`tokentrail.collector.flatten`, `metric_points`) hands a `Scan` every text a
request's rows keep: the attribute maps of spans, span events and links, resources, log records
and metric points, span and event names, status messages, log bodies, and the columns the
normalizer fills from attributes (messages, system instructions, tool arguments and results, ids,
names). The values of denied keys are replaced at once, before the normalizer reads them; the
patterns run when the request's rows are built (`Scan.run`), and replace text where it lies, so
no copy of a secret survives. The normalizer reads the content as it came: its hashes (what makes
two requests or two tool calls alike) are digests, not the text. Numbers, booleans and bytes are
never changed (token counts, costs, ids), except the value of a denied key.

What is redacted (`TOKENTRAIL_REDACT`, `_PATTERNS`, `_KEYS` in the settings):

- `secrets` (on by default): API keys and tokens with a recognizable form (OpenAI, Anthropic,
  Google, AWS, GitHub, GitLab, Slack, Stripe, Hugging Face, Groq, xAI, npm, PyPI), JSON Web Tokens,
  `Bearer`/`Basic` credentials, private key blocks, the password of a URL (`://user:pw@`) and
  the value given to a password, secret, API key or access token (`password=…`, `"api_key": "…"`);
  and the whole value of an attribute whose key ends in one of `_SECRET_KEYS` (authorization and
  cookie headers, passwords, API keys);
- `cards` (on by default): card numbers of 13 to 19 digits, alone or grouped as printed, whose
  issuer prefix is a card network's and whose Luhn check digit is right (a random digit run passes
  the check one time in ten; the prefix spares most others: timestamps, years, snowflake ids);
- `emails` (off by default): e-mail addresses. Coding agents name the developer by `user.email`,
  and the developers' pages group work by it; turning this on makes them one anonymous user;
- extra patterns: named Python regular expressions, searched in every string;
- denied keys: attribute keys or globs, in any case, whose values are replaced whole.

A rule (extra patterns too) whose expression has a group named `secret` replaces only that group
(`Bearer [REDACTED:bearer]`). Content often is JSON text, and a replacement keeps it JSON: it holds
no quote or backslash, a match that begins inside an escape such as `\\n` keeps the escape, and a
card number written as a bare JSON number becomes a string.

It is the ingest hot path. All strings of a request are checked at once, in C++, by one RE2
expression (pyarrow's `match_substring_regex`: linear in the text, whatever the text) that
matches wherever a built-in rule could; the strings it flags, few or none in most requests, are
checked again rule by rule, and only a rule that may match a string searches it with its Python
expression, which also checks what RE2 cannot (a word boundary, a Luhn sum). Keys are judged once
each and remembered. A `Redactor` pickles as its settings: the flattening worker processes compile
its expressions again.
"""

from __future__ import annotations

import array
import fnmatch
import operator
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tokentrail.collector._values import text as text_of
from tokentrail.server.settings import REDACT_DEFAULT, REDACT_SETS

__all__ = ["OFF", "Cells", "Redactor", "Rule", "Scan", "luhn", "tally"]

Match = re.Match[str]

#: the rule that counts values of denied keys
DENIED_KEY = "denied_key"

#: attribute keys whose values `secrets` replaces whole: credentials by name (HTTP headers are
#: `http.request.header.<name>`, lower case); a suffix, so that `..._present` flags are kept
_SECRET_KEYS = (
    "*authorization",
    "*cookie",
    "*password",
    "*passwd",
    "*secret",
    "*api_key",
    "*api-key",
    "*apikey",
    "*access_token",
    "*auth_token",
    "*refresh_token",
    "*private_key",
)
#: keys remembered (judged denied or not) before the memory is cleared: keys come from senders
_MAX_KEYS = 100_000

_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_HEX = frozenset("0123456789abcdefABCDEF")


def _escape_at(text: str, start: int) -> int:
    """How many characters from `start` end a JSON escape begun before it (`\\n` → 1, `\\u00e9`
    → 5): text inside an escape is not part of what follows it."""
    if start == 0 or text[start - 1] != "\\":
        return 0
    if (
        text[start : start + 1] == "u"
        and len(text) >= start + 5
        and _HEX.issuperset(text[start + 1 : start + 5])
    ):
        return 5
    return 1 if text[start : start + 1] in ("n", "r", "t", "b", "f") else 0


def _starts_word(text: str, start: int) -> bool:
    """Nothing of a token runs into `start` (a key inside a longer word is not a key), an escape
    aside: `\\nsk-…` begins a key."""
    if start == 0 or text[start - 1] not in _TOKEN_CHARS:
        return True
    if start >= 2 and text[start - 2] == "\\" and text[start - 1] in "nrtbf":
        return True
    return start >= 6 and text[start - 6 : start - 4] == "\\u" and _HEX.issuperset(text[start - 4 : start])


_DIGIT = re.compile(r"[0-9]")
#: keys with these prefixes are random enough as they are; the others must hold a digit, so that
#: `sk-learn-…` or a slug is no key
_NO_DIGIT_NEEDED = ("AKIA", "ASIA", "AIza")


def _key(text: str, m: Match) -> bool:
    return _starts_word(text, m.start()) and (
        m.group().startswith(_NO_DIGIT_NEEDED) or _DIGIT.search(m.group()) is not None
    )


def _credential(text: str, m: Match) -> bool:
    """`Bearer`/`Basic` as a word, before a credential with a digit in it (not prose)."""
    return _starts_word(text, m.start()) and _DIGIT.search(m.group("secret")) is not None


def luhn(digits: str) -> bool:
    """The Luhn check of a card number: its last digit makes the weighted sum a multiple of 10."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer(digits: str) -> bool:
    """A card network's prefix: Mastercard 2221–2720 and 51–55, Amex 34/37, Diners 30/36/38/39,
    JCB 3528–3589, Visa 4, Maestro, Discover, UnionPay and others 5 and 6."""
    first = digits[0]
    if first == "2":
        return 2221 <= int(digits[:4]) <= 2720
    if first == "3":
        return digits[1] in "046789" or 3528 <= int(digits[:4]) <= 3589
    return first in "456"


def _card(text: str, m: Match) -> bool:
    start = m.start()
    if start >= 2 and text[start - 1] == "." and text[start - 2].isdigit():
        return False  # the decimals of a number
    digits = m.group().replace(" ", "").replace("-", "")
    return _issuer(digits) and luhn(digits)


@dataclass(frozen=True)
class Rule:
    """One redaction rule: what it finds, and what it is counted and marked as."""

    name: str
    pattern: re.Pattern[str]
    #: an RE2 expression that matches wherever `pattern` does ("" for extra patterns, which are
    #: searched in every string)
    trigger: str = ""
    #: a match is redacted only if this says so
    accept: Callable[[str, Match], bool] | None = None

    def apply(self, text: str, counts: Counter[str]) -> str:
        found = 0
        mark = f"[REDACTED:{self.name}]"
        secret = "secret" in self.pattern.groupindex

        def replace(m: Match) -> str:
            nonlocal found
            whole, begin = m.group(), m.start()
            if self.accept is not None and not self.accept(text, m):
                return whole
            start, end = m.span("secret") if secret and m.group("secret") is not None else m.span()
            start += _escape_at(text, start)
            if start >= end:
                return whole
            found += 1
            value = f'"{mark}"' if _bare_number(text, start, end) else mark
            return whole[: start - begin] + value + whole[end - begin :]

        out = self.pattern.sub(replace, text)
        if found:
            counts[self.name] += found
        return out


_SPACE = frozenset(" \t\r\n")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _bare_number(text: str, start: int, end: int) -> bool:
    """The match is a number standing as a value in JSON text (`{"card": 4111…}`), not inside
    one of its strings: its replacement must be a JSON string, or the text would no longer parse."""
    if not text[start:end].isdigit() or text.lstrip()[:1] not in ("{", "["):
        return False
    before, after = start - 1, end
    while before >= 0 and text[before] in _SPACE:
        before -= 1
    while after < len(text) and text[after] in _SPACE:
        after += 1
    if before < 0 or after >= len(text) or text[before] not in ":[," or text[after] not in ",]}":
        return False
    for string in _JSON_STRING.finditer(text):
        if string.start() >= start:
            return True
        if string.end() > start:
            return False  # inside a string
    return True


def _at_most_16(pattern: str) -> str:
    """The trigger of an expression whose every alternative ends in a run of `{n,}` characters:
    n of them, at most 16 (RE2 builds a smaller automaton for a smaller count; it still finds
    every match)."""
    return re.sub(r"\{([0-9]+),\}", lambda m: f"{{{min(int(m[1]), 16)}}}", pattern)


def _rule(name: str, pattern: str, trigger: str, accept: Callable[[str, Match], bool] | None = None) -> Rule:
    # ASCII classes: what RE2 (ASCII \s, case folding) finds is then never less than what Python does
    return Rule(name, re.compile(pattern, re.ASCII), trigger, accept)


_API_KEY = (
    r"sk-[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic (sk-ant-…), DeepSeek, OpenRouter (sk-or-…)
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe secret and restricted keys
    r"|AIza[A-Za-z0-9_-]{35}"  # Google (Gemini)
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abeprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|gsk_[A-Za-z0-9]{40,}|xai-[A-Za-z0-9]{40,}"  # Groq, xAI
    r"|npm_[A-Za-z0-9]{36,}|pypi-[A-Za-z0-9_-]{50,}"  # npm, PyPI
)
_JWT = r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
_SECRET_NAMES = (
    r"passw(?:or)?d|secret|api[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|private[_-]?key"
)
_URL_PASSWORD = r"""://[^\s/:@"'\\]+:(?P<secret>[^\s/@"'\\\[][^\s/@"'\\]*)@"""
#: a space or a tab, also as JSON writes a tab inside a string (`\t`): content is often JSON text
_BLANK = r"(?:[ \t]|\\t)"
_ASSIGNED = (
    rf"""(?i:{_SECRET_NAMES})\\?["']?{_BLANK}*[:=]{_BLANK}*(?:\\?["'])?"""
    r"""(?P<secret>(?!(?i:null|none|true|false|undefined)\b)[^\s"'\\,;&\[\]{}()<>]{3,})"""
)
_PRIVATE_KEY = r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----(?s:.*?-----END[A-Z ]{0,40}PRIVATE KEY-----|.*)"
_EMAIL = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"
# the first digit, then whether a digit was before it: a pattern that begins with a character class
# is searched much faster than one that begins with a look-behind
_CARD = (
    r"[2-6](?<![0-9][2-6])(?:[0-9]{12,18}"
    r"|[0-9]{3}(?P<sep>[ -])[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)[0-9]{4}(?:(?P=sep)[0-9]{1,3})?"
    r"|(?<=3)[0-9]{3}(?P<amex>[ -])[0-9]{6}(?P=amex)[0-9]{4,5})(?![0-9])"
)

#: the built-in rules of each set, in the order they apply (a key inside a credential is marked
#: as the key, once)
_RULES: dict[str, tuple[Rule, ...]] = {
    "secrets": (
        _rule("private_key", _PRIVATE_KEY, r"-----BEGIN[A-Z ]*PRIVATE KEY-----"),
        _rule("api_key", _API_KEY, _at_most_16(_API_KEY), _key),
        _rule("jwt", _JWT, r"eyJ[A-Za-z0-9_-]{10,}\.eyJ", _key),
        _rule(
            "bearer",
            rf"(?i:bearer|basic){_BLANK}+(?P<secret>[A-Za-z0-9._~+/-]{{16,}}=*)",
            rf"(?i:bearer|basic){_BLANK}+[A-Za-z0-9._~+/-]{{16}}",
            _credential,
        ),
        _rule("credential", _URL_PASSWORD, r"""://[^\s/:@"'\\]+:[^\s/@"'\\]+@"""),
        _rule("credential", _ASSIGNED, rf"""(?i:{_SECRET_NAMES})\\?["']?{_BLANK}*[:=]"""),
    ),
    "emails": (_rule("email", _EMAIL, r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\."),),
    "cards": (_rule("card", _CARD, r"[2-6][0-9]{3}[ -]?[0-9]{4,6}[ -]?[0-9]{4}", _card),),
}
assert tuple(_RULES) == REDACT_SETS, "every rule set the settings name has rules here"


class Redactor:
    """The rules in force; `scan()` redacts one request's strings, `redact` one string."""

    def __init__(
        self,
        sets: Iterable[str] = REDACT_DEFAULT,
        patterns: Iterable[tuple[str, str]] = (),
        keys: Iterable[str] = (),
    ) -> None:
        self.sets = tuple(sets)
        self.patterns = tuple(patterns)
        self.keys = tuple(keys)
        self.builtin = tuple(rule for name in REDACT_SETS if name in self.sets for rule in _RULES[name])
        self.custom = tuple(Rule(name, re.compile(pattern)) for name, pattern in self.patterns)
        self.rules = self.builtin + self.custom
        #: where a built-in rule could match: one RE2 expression
        self.trigger = "|".join(f"(?:{rule.trigger})" for rule in self.builtin)
        globs = self.keys + (_SECRET_KEYS if "secrets" in self.sets else ())
        self._denies = (
            re.compile("|".join(fnmatch.translate(g.lower()) for g in globs)).match if globs else None
        )
        self._judged: dict[str, bool] = {}
        self._denied: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        return cls(settings.redact, settings.redact_patterns, settings.redact_keys)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Redactor, (self.sets, self.patterns, self.keys))

    @property
    def active(self) -> bool:
        return bool(self.rules) or self._denies is not None

    def scan(self) -> Scan:
        return Scan(self) if self.active else OFF

    def redact(self, text: str, counts: Counter[str], rules: Iterable[Rule] | None = None) -> str:
        """`text` with every rule (or `rules`) applied, counting what each replaced."""
        for rule in self.rules if rules is None else rules:
            text = rule.apply(text, counts)
        return text

    def deny(self, values: dict[str, Any] | None, texts: dict[str, str]) -> int:
        """Replace the values of denied keys in an attribute map (each key is judged once, then
        remembered); returns how many."""
        if self._denies is None:
            return 0
        judged = self._judged
        if not judged.keys() >= texts.keys():
            if len(judged) + len(texts) > _MAX_KEYS:
                judged.clear()
                self._denied.clear()
            for key in texts.keys() - judged.keys():
                deny = judged[key] = self._denies(key.lower()) is not None
                if deny:
                    self._denied.add(key)
        if not self._denied or self._denied.isdisjoint(texts):  # no key denied yet: nothing to look for
            return 0
        hits = self._denied.intersection(texts)
        mark = f"[REDACTED:{DENIED_KEY}]"
        for key in hits:
            texts[key] = mark
            if values is not None:
                values[key] = mark
        return len(hits)


class Cells:
    """Which cells of a row hold text, and whether what is replaced in them is counted (text made
    from other values the request holds is not counted again)."""

    __slots__ = ("counted", "get", "indices")

    def __init__(self, indices: Sequence[int], counted: bool = True) -> None:
        self.indices = tuple(indices)
        self.counted = counted
        getter = operator.itemgetter(*self.indices)
        #: the cells' values, as a tuple (read at once)
        self.get: Callable[[Sequence[Any]], tuple[Any, ...]] = (
            getter if len(self.indices) > 1 else lambda row: (getter(row),)
        )


class Scan:
    """The strings of one request, collected where they lie; `run` redacts them there.

    Text made from them (a normalized column: a copy of an attribute, messages rebuilt from
    flattened attributes) is not searched: it can hold a match only where what it was made of
    does. Once a span's own texts are redacted, the rules that replaced something there are
    applied to what was made from them (`made`), and not counted again: what is counted is what
    the request held."""

    __slots__ = ("_changed", "_counts", "_ends", "_holders", "_made", "_redactor", "_strings")

    def __init__(self, redactor: Redactor | None) -> None:
        self._redactor = redactor
        # where the strings lie, three items each: an attribute map's values (or None) and texts,
        # or a list and its text cells' indices (None: all of it); and whether what is replaced
        # there is counted. Few objects a holder: a scan keeps them for a whole request
        self._holders: list[Any] = []
        self._ends = array.array("q")  # where each holder's strings end in _strings
        self._strings: list[str] = []
        self._counts: Counter[str] = Counter()
        #: text made from the holders from a mark on: (row, its cells, the mark, the resource's)
        self._made: list[tuple[list[Any], Cells, int, int]] = []
        #: holders whose text a rule changed, and the rules that were applied to it
        self._changed: dict[int, list[Rule]] = {}

    def mark(self) -> int:
        """Where the next holder will be (for `made`)."""
        return len(self._ends)

    def deny(self, values: dict[str, Any] | None, texts: dict[str, str]) -> None:
        """Replace the values of denied keys in an attribute map now (before the normalizer reads
        them)."""
        if self._redactor is not None and (n := self._redactor.deny(values, texts)):
            self._counts[DENIED_KEY] += n

    def pair(self, values: dict[str, Any] | None, texts: dict[str, str], *, denied: bool = False) -> None:
        """An attribute map as `flatten.attributes` decodes it (values None: texts only); its
        denied keys are replaced now, unless `denied` says `deny` did."""
        if not denied:
            self.deny(values, texts)
        if texts:
            self._strings += texts.values()
            self._holders += (values, texts, True)
            self._ends.append(len(self._strings))

    def strings(self, items: list[str], *, counted: bool = True) -> None:
        """A list of strings."""
        if items:
            self._strings += items
            self._holders += (items, None, counted)
            self._ends.append(len(self._strings))

    def cells(self, row: list[Any], cells: Cells) -> None:
        """The text cells of a row."""
        self._strings += cells.get(row)
        self._holders += (row, cells.indices, cells.counted)
        self._ends.append(len(self._strings))

    def made(self, row: list[Any], cells: Cells, since: int, resource: int) -> None:
        """Cells of a row made from the text collected from the mark `since` on (up to the next
        `made`) and from its resource's (the holder at the mark `resource`)."""
        self._made.append((row, cells, since, resource))

    def run(self) -> Counter[str]:
        """Redact everything collected; returns how many values each rule replaced."""
        counts = self._counts
        redactor = self._redactor
        if redactor is None or not self._strings:
            return counts
        rules_at: dict[int, list[Rule]] = {}  # the rules to apply to a string, by its index
        if redactor.trigger:
            flagged = _flagged(self._strings, redactor.trigger)
            if flagged:
                texts = [self._strings[i] for i in flagged]
                rules_at.update(zip(flagged, _rules_of(texts, redactor.builtin), strict=True))
        for rule in redactor.custom:
            search = rule.pattern.search
            for i, text in enumerate(self._strings):
                if search(text) is not None:
                    rules_at.setdefault(i, []).append(rule)
        for i in sorted(rules_at):
            self._redact(i, redactor, rules_at[i])
        if self._changed and self._made:
            self._redact_made(redactor)
        return counts

    def _redact_made(self, redactor: Redactor) -> None:
        changed = sorted(self._changed)
        uncounted: Counter[str] = Counter()
        for n, (row, cells, since, resource) in enumerate(self._made):
            until = self._made[n + 1][2] if n + 1 < len(self._made) else len(self._ends)
            holders = changed[bisect_left(changed, since) : bisect_left(changed, until)]
            if resource in self._changed:
                holders.append(resource)
            if not holders:
                continue
            fired = {id(rule) for h in holders for rule in self._changed[h]}
            rules = [rule for rule in redactor.rules if id(rule) in fired]
            for c in cells.indices:
                value = row[c]
                if isinstance(value, str) and value:
                    row[c] = redactor.redact(value, uncounted, rules)
                elif isinstance(value, list) and value:  # finish reasons
                    row[c] = [redactor.redact(v, uncounted, rules) for v in value]

    def _redact(self, i: int, redactor: Redactor, rules: list[Rule]) -> None:
        k = bisect_right(self._ends, i)
        j = i - (self._ends[k - 1] if k else 0)
        first, second, counted = self._holders[3 * k : 3 * k + 3]
        counts = self._counts if counted else Counter()
        if not isinstance(second, dict):
            cells: list[Any] = first
            cell = j if second is None else second[j]
            redacted = redactor.redact(cells[cell], counts, rules)
            if redacted != cells[cell]:
                cells[cell] = redacted
                self._changed[k] = self._changed.get(k, []) + rules
            return
        values: dict[str, Any] | None = first
        texts: dict[str, str] = second
        key = list(texts)[j]
        value = texts[key] if values is None else values.get(key)
        if isinstance(value, str):
            redacted = redactor.redact(value, counts, rules)
            if redacted != value:
                texts[key] = redacted
                if values is not None:
                    values[key] = redacted
                self._changed[k] = self._changed.get(k, []) + rules
        elif values is not None and isinstance(value, (list, dict)):
            structure = _structure(value, redactor, counts, rules)
            if structure != value:
                values[key] = structure
                texts[key] = text_of(structure)
                self._changed[k] = self._changed.get(k, []) + rules
        # numbers, booleans, bytes: never changed


def _structure(value: Any, redactor: Redactor, counts: Counter[str], rules: list[Rule]) -> Any:
    """A list or map (an OTLP array or kvlist), its strings redacted."""
    if isinstance(value, str):
        return redactor.redact(value, counts, rules)
    if isinstance(value, list):
        return [_structure(v, redactor, counts, rules) for v in value]
    if isinstance(value, dict):
        return {k: _structure(v, redactor, counts, rules) for k, v in value.items()}
    return value


def _flagged(strings: list[str], trigger: str) -> list[int]:
    """The indices of the strings `trigger` matches, found by RE2."""
    try:
        array = pa.array(strings, type=pa.string())
    except (pa.ArrowException, UnicodeError):
        return list(range(len(strings)))  # not UTF-8 (a lone surrogate): searched with every rule
    return pc.indices_nonzero(pc.match_substring_regex(array, pattern=trigger)).to_pylist()  # type: ignore[no-any-return]


def _rules_of(texts: list[str], rules: Sequence[Rule]) -> list[list[Rule]]:
    """For each text, the rules whose trigger matches it (RE2 again, each trigger once, over the
    flagged strings only): a rule's Python expression runs only where it can match."""
    try:
        array = pa.array(texts, type=pa.string())
    except (pa.ArrowException, UnicodeError):
        return [list(rules) for _ in texts]
    hits = {
        trigger: pc.match_substring_regex(array, pattern=trigger).to_pylist()
        for trigger in dict.fromkeys(rule.trigger for rule in rules)
    }
    return [[rule for rule in rules if hits[rule.trigger][j]] for j in range(len(texts))]


class _Off(Scan):
    """No redaction: collects nothing."""

    __slots__ = ()

    def deny(self, values: dict[str, Any] | None, texts: dict[str, str]) -> None:
        pass

    def pair(self, values: dict[str, Any] | None, texts: dict[str, str], *, denied: bool = False) -> None:
        pass

    def strings(self, items: list[str], *, counted: bool = True) -> None:
        pass

    def cells(self, row: list[Any], cells: Cells) -> None:
        pass

    def made(self, row: list[Any], cells: Cells, since: int, resource: int) -> None:
        pass


OFF: Scan = _Off(None)


def tally(into: Counter[tuple[str, str]], project: str, counts: Mapping[str, int]) -> None:
    """Add one request's counts by rule to a batch's counts by (project, rule)."""
    for rule, n in counts.items():
        into[(project, rule)] += n
