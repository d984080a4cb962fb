# cython: language_level=3, boundscheck=False, wraparound=False
"""The tokenizer of the .config language, compiled.

The twin of ``_parser_py.py``, whose docstring describes ``scan``: same
names, same results, same errors on every input (both take their messages
and escapes from ``slo.lexicon``). Change both together.

Characters are read from a UCS-4 copy of the text (``s``), so the inner
loops are plain array reads; values are sliced from the ``str`` itself.
Keys and directives of the schema come out as the schema's own ``str``
objects (equal to the text, so results are the twin's): no new string to
make, and every later dict lookup of them is a pointer comparison.
"""

from cpython.dict cimport PyDict_SetDefault, PyDict_SetItem
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.stddef cimport wchar_t
from libc.string cimport memchr

from .lexicon import ESCAPES, FROM_WITHOUT_PATH, HASH_STARTS_VALUE, INVALID_KEY, MISSING_VALUE, NO_DIRECTIVE, NO_EQUALS, NOT_A_DIRECTIVE, QUOTE_IN_WORD, QUOTED_KEY, SPACE_AFTER_QUOTE, SPACE_AROUND_EQUALS, STRAY_EQUALS, UNKNOWN_ESCAPE, UNTERMINATED_DOUBLE, UNTERMINATED_SINGLE
from .schema import DEFAULTS, DIRECTIVES, FAST_BOOL, FAST_CHOICE, FAST_FLOAT, FAST_INT, FAST_NONEMPTY, FAST_PATTERN, FAST_STR, FAST_TABLE, KEY_SECTION, KEYED_DIRECTIVES, KEYS, RULES
from .statements import BARE, DOUBLE, ENTRY_ITEM, KEY, QUOTE, SINGLE, VALUE

# The fields and codes of slo.statements and slo.schema this module reads, as C constants
# (indexing with a Python int object is slower), checked against those at import.
cdef enum:
    _KEY = 0
    _VALUE = 1
    _QUOTE = 6
    _ENTRY_ITEM = 0
    _BARE = 0
    _DOUBLE = 1
    _SINGLE = 2

cdef enum:
    _FAST_INT = 0
    _FAST_FLOAT = 1
    _FAST_BOOL = 2
    _FAST_STR = 3
    _FAST_CHOICE = 4
    _FAST_NONEMPTY = 5
    _FAST_PATTERN = 6

assert (_KEY, _VALUE, _QUOTE, _ENTRY_ITEM, _BARE, _DOUBLE, _SINGLE) == (KEY, VALUE, QUOTE, ENTRY_ITEM, BARE, DOUBLE, SINGLE)
assert (_FAST_INT, _FAST_FLOAT, _FAST_BOOL, _FAST_STR, _FAST_CHOICE, _FAST_NONEMPTY, _FAST_PATTERN) == (
    FAST_INT, FAST_FLOAT, FAST_BOOL, FAST_STR, FAST_CHOICE, FAST_NONEMPTY, FAST_PATTERN)

cdef dict _KEY_SECTION = KEY_SECTION
cdef frozenset _SECTIONS = frozenset(KEYED_DIRECTIVES)

cdef extern from "wchar.h":
    const wchar_t* wmemchr(const wchar_t* s, wchar_t c, size_t n)

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)
    Py_UCS4* PyUnicode_AsUCS4Copy(object text) except NULL
    void PyMem_Free(void* p)
    int PyUnicode_KIND(object text)
    void* PyUnicode_DATA(object text)
    int PyUnicode_1BYTE_KIND
    Py_ssize_t PyUnicode_FindChar(object text, Py_UCS4 ch, Py_ssize_t start, Py_ssize_t end, int direction) except -2


# ---- the schema's names, found without making a string -------------------

cdef enum:
    _SLOTS = 256  # a power of two, several times the number of keys

cdef struct _Name:
    PyObject* text  # the schema's str (kept alive by _NAMES); NULL: an empty slot
    const Py_UCS4* chars
    Py_ssize_t length

cdef _Name _KEY_SLOTS[_SLOTS]
cdef list _NAMES = []  # owners of the texts and character copies above


cdef unsigned int _HASH_START = 2166136261u  # FNV-1a


cdef inline unsigned int _hash_step(unsigned int h, Py_UCS4 c) noexcept:
    return (h ^ <unsigned int> c) * 16777619u


cdef inline unsigned int _hash(const Py_UCS4* s, Py_ssize_t start, Py_ssize_t end) noexcept:
    cdef unsigned int h = _HASH_START
    cdef Py_ssize_t i
    for i in range(start, end):
        h = _hash_step(h, s[i])
    return h


# Characters that may end a bare word (blanks, newline, quotes, a continuation
# backslash), and '=' that also ends a key: the inner loops test one table entry.
cdef enum:
    _ENDS_WORD = 1
    _ENDS_KEY = 2

cdef char _STOPS[128]
for _c in " \t\r\f\v\n\"'\\":
    _STOPS[ord(_c)] = _ENDS_WORD | _ENDS_KEY
_STOPS[ord("=")] = _ENDS_KEY


cdef _Name _name(str text):
    cdef bytes wide = text.encode("utf-32-le")
    _NAMES.append((text, wide))
    cdef _Name name
    name.text = <PyObject*> text
    name.chars = <const Py_UCS4*> <const char*> wide
    name.length = len(text)
    return name


cdef void _add_key(str key) except *:
    cdef _Name name = _name(key)
    cdef unsigned int slot = _hash(name.chars, 0, name.length) & (_SLOTS - 1)
    while _KEY_SLOTS[slot].text != NULL:
        slot = (slot + 1) & (_SLOTS - 1)
    _KEY_SLOTS[slot] = name


cdef object _known_key(const Py_UCS4* s, Py_ssize_t start, Py_ssize_t end, unsigned int h):
    """The schema's str for the key s[start:end] (whose _hash is h), or None."""
    cdef unsigned int slot = h & (_SLOTS - 1)
    cdef Py_ssize_t i, length = end - start
    while _KEY_SLOTS[slot].text != NULL:
        if _KEY_SLOTS[slot].length == length:
            i = 0
            while i < length and _KEY_SLOTS[slot].chars[i] == s[start + i]:
                i += 1
            if i == length:
                return <object> _KEY_SLOTS[slot].text
        slot = (slot + 1) & (_SLOTS - 1)
    return None


cdef _Name _DIRECTIVE_NAMES[16]
cdef Py_ssize_t _N_DIRECTIVES = 0


cdef object _known_directive(const Py_UCS4* s, Py_ssize_t start, Py_ssize_t end):
    """The schema's str for the directive s[start:end] in any case, or None."""
    cdef Py_ssize_t d, i, length = end - start
    cdef Py_UCS4 c
    for d in range(_N_DIRECTIVES):
        if _DIRECTIVE_NAMES[d].length != length:
            continue
        i = 0
        while i < length:
            c = s[start + i]
            if u'a' <= c <= u'z':
                c = <Py_UCS4> (<unsigned int> c - 32u)
            if c != _DIRECTIVE_NAMES[d].chars[i]:
                break
            i += 1
        if i == length:
            return <object> _DIRECTIVE_NAMES[d].text
    return None


# Directives come out as these objects (see _known_directive), so `is` compares them.
cdef str _FROM = DIRECTIVES[0]
cdef str _ENV = DIRECTIVES[len(DIRECTIVES) - 1]
assert _FROM == "FROM" and _ENV == "ENV"

for _key in KEYS:
    _add_key(_key)
assert len(DIRECTIVES) <= 16
for _directive in DIRECTIVES:
    _DIRECTIVE_NAMES[_N_DIRECTIVES] = _name(_directive)
    _N_DIRECTIVES += 1


cdef inline tuple _untracked(tuple item):
    """item, which holds only strings and ints, left out of the cyclic garbage collector's work
    (as CPython itself does for such tuples, but at once): a long file makes many."""
    PyObject_GC_UnTrack(<void*> item)
    return item


cdef tuple _INTS = tuple(range(1024))  # the ints of most positions, made once


cdef inline object _int(Py_ssize_t value):
    if <size_t> value < 1024:
        return <object> PyTuple_GET_ITEM(_INTS, value)
    return value


cdef dict _ESCAPES = ESCAPES


class _Error(Exception):
    def __init__(self, pos, end, message):
        self.pos = pos
        self.end = end
        self.message = message


cdef inline bint _blank(Py_UCS4 c) noexcept:
    return c == u' ' or c == u'\t' or c == u'\r' or c == u'\f' or c == u'\v'


cdef inline bint _name_start(Py_UCS4 c) noexcept:
    return (u'A' <= c <= u'Z') or (u'a' <= c <= u'z') or c == u'_'


cdef inline bint _name_char(Py_UCS4 c) noexcept:
    return _name_start(c) or (u'0' <= c <= u'9')


cdef bint _is_name(const Py_UCS4* s, Py_ssize_t start, Py_ssize_t end) noexcept:
    cdef Py_ssize_t i
    if end <= start or not _name_start(s[start]):
        return False
    for i in range(start + 1, end):
        if not _name_char(s[i]):
            return False
    return True


cdef inline Py_ssize_t _skip_blanks(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    while pos < n and _blank(s[pos]):
        pos += 1
    return pos


cdef inline Py_ssize_t _end_of_line(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    cdef const wchar_t* found
    if sizeof(wchar_t) == sizeof(Py_UCS4):  # the C library's vectorized search (not on Windows)
        if pos >= n:
            return pos
        found = wmemchr(<const wchar_t*> (s + pos), <wchar_t> 10, <size_t> (n - pos))
        return n if found == NULL else <Py_ssize_t> (<const Py_UCS4*> found - s)
    while pos < n and s[pos] != u'\n':
        pos += 1
    return pos


cdef inline bint _is_continuation(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """True when s[pos] is a backslash with only blanks after it on its line."""
    if s[pos] != u'\\':
        return False
    pos = _skip_blanks(s, pos + 1, n)
    return pos >= n or s[pos] == u'\n'


cdef Py_ssize_t _skip_statement(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """Position of the newline that ends the statement around pos (or n)."""
    cdef Py_ssize_t eol, last, start
    while True:
        eol = _end_of_line(s, pos, n)
        last = eol - 1
        while last >= pos and _blank(s[last]):
            last -= 1
        if eol >= n or last < pos or s[last] != u'\\':
            return eol
        pos = eol + 1
        while True:
            start = _skip_blanks(s, pos, n)
            if start >= n or s[start] != u'#':
                break
            pos = _end_of_line(s, start, n)
            if pos >= n:
                return pos
            pos += 1


cdef Py_ssize_t _word_end(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) except -1:
    """End of a bare word: a blank, a newline or a continuation backslash."""
    cdef Py_UCS4 c
    while pos < n:
        c = s[pos]
        if c < 128 and _STOPS[c] & _ENDS_WORD:
            if c == u'"' or c == u"'":
                raise _Error(pos, pos + 1, QUOTE_IN_WORD)
            if c != u'\\' or _is_continuation(s, pos, n):
                break
        pos += 1
    return pos


cdef object _parse_quoted(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t* end, int* quote):
    """The quoted string at pos; sets end (past the closing quote) and quote (_DOUBLE or _SINGLE)."""
    cdef Py_UCS4 q = s[pos]
    cdef Py_ssize_t start = pos, chunk
    cdef Py_UCS4 c
    cdef list parts
    pos += 1
    if q == u"'":
        while pos < n and s[pos] != u"'" and s[pos] != u'\n':
            pos += 1
        if pos >= n or s[pos] != u"'":
            raise _Error(start, start + 1, UNTERMINATED_SINGLE)
        end[0] = pos + 1
        quote[0] = _SINGLE
        return text[start + 1:pos]
    parts = None
    chunk = pos
    while True:
        if pos >= n or s[pos] == u'\n':
            raise _Error(start, start + 1, UNTERMINATED_DOUBLE)
        c = s[pos]
        if c == u'"':
            end[0] = pos + 1
            quote[0] = _DOUBLE
            if parts is None:
                return text[chunk:pos]
            parts.append(text[chunk:pos])
            return "".join(parts)
        if c == u'\\':
            if parts is None:
                parts = []
            parts.append(text[chunk:pos])
            escaped = _ESCAPES.get(text[pos + 1]) if pos + 1 < n else None
            if escaped is None:
                shown = text[pos:pos + 2] if pos + 1 < n and s[pos + 1] != u'\n' else "\\"
                raise _Error(pos, pos + len(shown), UNKNOWN_ESCAPE.format(escape=shown))
            parts.append(escaped)
            pos += 2
            chunk = pos
        else:
            pos += 1


cdef inline bint _after_quote_ok(const Py_UCS4* s, Py_ssize_t end, Py_ssize_t n) noexcept:
    return end >= n or _blank(s[end]) or s[end] == u'\n' or _is_continuation(s, end, n)


cdef object _parse_value(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, str key,
                         Py_ssize_t key_pos, Py_ssize_t* end, int* quote):
    """The value after 'key='; sets end and quote (_BARE, _DOUBLE or _SINGLE)."""
    cdef Py_ssize_t vpos, vend
    if pos >= n or _blank(s[pos]) or s[pos] == u'\n' or _is_continuation(s, pos, n):
        if pos < n and _blank(s[pos]):
            # 'key= value': a word without '=' after the blanks was meant as the value.
            vpos = _skip_blanks(s, pos, n)
            vend = vpos
            while vend < n and not _blank(s[vend]) and s[vend] != u'\n':
                vend += 1
            word = text[vpos:vend]
            if vend > vpos and s[vpos] != u'#' and "=" not in word and not _is_continuation(s, vpos, n):
                raise _Error(key_pos, pos, SPACE_AROUND_EQUALS.format(key=key, value=word))
        raise _Error(key_pos, pos, MISSING_VALUE.format(key=key))
    cdef Py_UCS4 c = s[pos]
    if c == u'"' or c == u"'":
        value = _parse_quoted(text, s, pos, n, end, quote)
        if not _after_quote_ok(s, end[0], n):
            raise _Error(end[0], end[0] + 1, SPACE_AFTER_QUOTE)
        return value
    if c == u'#':
        raise _Error(pos, pos + 1, HASH_STARTS_VALUE.format(key=key))
    end[0] = _word_end(s, pos, n)
    quote[0] = _BARE
    return text[pos:end[0]]


cdef tuple _parse_pair(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t line,
                       Py_ssize_t line_start, Py_ssize_t* end):
    """The item of the key=value at pos; sets end."""
    cdef Py_ssize_t start = pos, after, vpos, vend
    cdef int quote = _BARE
    cdef Py_UCS4 c
    cdef unsigned int h = _HASH_START
    while pos < n:
        c = s[pos]
        if c < 128 and _STOPS[c] & _ENDS_KEY:
            if c != u'\\' or _is_continuation(s, pos, n):
                break
        h = _hash_step(h, c)
        pos += 1
    if pos < n and s[pos] == u'=':
        if pos == start:
            raise _Error(pos, pos + 1, STRAY_EQUALS)
        key = _known_key(s, start, pos, h)
        if key is None:
            key = text[start:pos]
            if not _is_name(s, start, pos):
                raise _Error(start, pos, INVALID_KEY.format(key=key))
        value = _parse_value(text, s, pos + 1, n, key, start, end, &quote)
        return _untracked((key, value, _int(line), _int(start - line_start + 1), _int(pos - line_start + 2),
                           _int(end[0] - line_start + 1), _int(quote)))
    if pos == start:
        raise _Error(start, start + 1, QUOTED_KEY)
    key = text[start:pos]
    after = _skip_blanks(s, pos, n)
    if after < n and s[after] == u'=':
        vpos = _skip_blanks(s, after + 1, n)
        vend = vpos
        while vend < n and not _blank(s[vend]) and s[vend] != u'\n':
            vend += 1
        raise _Error(start, after + 1, SPACE_AROUND_EQUALS.format(key=key, value=text[vpos:vend] or "..."))
    raise _Error(start, pos, NO_EQUALS.format(key=key))


cdef tuple _parse_path(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t line,
                       Py_ssize_t line_start, Py_ssize_t* end):
    """The item of the FROM path (bare or quoted) at pos; sets end."""
    cdef int quote = _BARE
    if s[pos] == u'"' or s[pos] == u"'":
        value = _parse_quoted(text, s, pos, n, end, &quote)
        if not _after_quote_ok(s, end[0], n):
            raise _Error(end[0], end[0] + 1, SPACE_AFTER_QUOTE)
    else:
        end[0] = _word_end(s, pos, n)
        value = text[pos:end[0]]
    return _untracked((value, _int(line), _int(pos - line_start + 1), _int(end[0] - line_start + 1), _int(quote)))


def scan(str text):
    return _scan_text(text, None)


def read(str text, path):
    cdef _Index index = _Index(path)
    errors = _scan_text(text, index)[1]
    return index.bases, index.sets, index.env, index.problems, errors, index.entries, index.env_entries


cdef inline bint _has_char(str text, Py_UCS4 c) except -1:
    if PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND:  # most texts: the C library's search
        return memchr(PyUnicode_DATA(text), <int> c, len(text)) != NULL
    return PyUnicode_FindChar(text, c, 0, len(text), 1) >= 0


cdef tuple _scan_text(str text, _Index index):
    if text[:1] == "\ufeff":
        text = text[1:]
    if _has_char(text, u'\r'):
        text = text.replace("\r\n", "\n")
    cdef Py_UCS4* s = PyUnicode_AsUCS4Copy(text)
    try:
        return _scan(text, s, index)
    finally:
        PyMem_Free(s)


cdef tuple _scan(str text, const Py_UCS4* s, _Index index):
    """(statements, errors) of text; with an index, statements go to it instead."""
    cdef list statements = []
    cdef list errors = []
    cdef list items
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t pos = 0, line = 1, line_start = 0, start, end = 0, stmt_line, stmt_col, stmt_line_start, eq
    cdef Py_UCS4 c
    cdef bint is_from
    while pos < n:
        pos = _skip_blanks(s, pos, n)
        if pos >= n:
            break
        c = s[pos]
        if c == u'\n':
            pos += 1
            line += 1
            line_start = pos
            continue
        if c == u'#':
            pos = _end_of_line(s, pos, n)
            continue
        # The directive.
        start = pos
        while pos < n and _name_char(s[pos]):
            pos += 1
        stmt_line = line
        stmt_col = start - line_start + 1
        stmt_line_start = line_start
        try:
            if pos == start or not _name_start(s[start]) or (
                    pos < n and not _blank(s[pos]) and s[pos] != u'\n'
                    and not _is_continuation(s, pos, n)):
                end = pos
                while end < n and not _blank(s[end]) and s[end] != u'\n':
                    end += 1
                word = text[start:end]
                eq = start
                while eq < end and s[eq] != u'=':
                    eq += 1
                if eq < end and _is_name(s, start, eq):
                    raise _Error(start, end, NO_DIRECTIVE.format(word=word))
                raise _Error(start, max(end, start + 1), NOT_A_DIRECTIVE.format(word=word))
            directive = _known_directive(s, start, pos)
            if directive is None:
                directive = text[start:pos].upper()
            is_from = directive is _FROM
            items = []
            while True:
                pos = _skip_blanks(s, pos, n)
                if pos >= n:
                    break
                c = s[pos]
                if c == u'\n':
                    break
                if c == u'#':
                    pos = _end_of_line(s, pos, n)
                    break
                if c == u'\\' and _is_continuation(s, pos, n):
                    # Join the next line; comment lines inside are skipped.
                    pos = _end_of_line(s, pos, n)
                    while pos < n:
                        pos += 1
                        line += 1
                        line_start = pos
                        pos = _skip_blanks(s, pos, n)
                        if pos < n and s[pos] == u'#':
                            pos = _end_of_line(s, pos, n)
                            continue
                        break
                    continue
                if is_from:
                    items.append(_parse_path(text, s, pos, n, line, line_start, &end))
                else:
                    items.append(_parse_pair(text, s, pos, n, line, line_start, &end))
                pos = end
            if is_from and not items:
                raise _Error(start, start + 4, FROM_WITHOUT_PATH)
            if index is None:
                statements.append((directive, stmt_line, stmt_col, items))
            else:
                index.add(directive, stmt_line, stmt_col, items)
        except _Error as e:
            if e.pos < line_start:  # a FROM with no path, found past a continuation: point at the FROM
                line, line_start = stmt_line, stmt_line_start
            errors.append((line, e.pos - line_start + 1, max(e.end, e.pos + 1) - line_start + 1, e.message))
            end = _skip_statement(s, e.pos, n)
            line += text.count("\n", e.pos, end)
            pos = end
            line_start = text.rfind("\n", 0, pos) + 1
    return statements, errors


# ---- fast typing of plain values (see slo.schema.FAST_TABLE) -------------

from libc.math cimport isfinite

cdef dict _BOOL_WORDS = {"True": True, "False": False, "true": True, "false": False}
cdef frozenset _NONE_WORDS = frozenset(("None", "none", "null"))
cdef object _NOT_TYPED = object()


# The schema's typing specs, sections, and the bits of the cross-field rules that read each key
# (bit i: slo.schema.RULES[i]), by the address of the schema's key str, which read gives every known key:
# found without hashing the key or a dict lookup.
cdef struct _Spec:
    PyObject* key
    int code  # the FAST_TABLE tuple's fields, as C values
    bint optional
    bint has_low, low_open, has_high, high_open
    double low, high
    PyObject* check  # the choices' frozenset, or the pattern's fullmatch
    PyObject* matched  # a pattern's verdicts (text -> bool) remembered, a dict in _MATCHED
    PyObject* section  # the directive the key lives under
    unsigned long long rules

cdef _Spec _SPECS[_SLOTS]
cdef dict _DEFAULTS = DEFAULTS
cdef dict _FAST_TABLE = FAST_TABLE
cdef dict _CANONICAL = {key: key for key in FAST_TABLE}  # the schema's own str of each key
cdef dict _MATCHED = {key: {} for key, spec in FAST_TABLE.items() if spec[0] == FAST_PATTERN}
cdef Py_ssize_t _MAX_MATCHED = 256  # a pattern's memo forgets past this many texts


cdef inline unsigned int _address_slot(PyObject* key) noexcept:
    return <unsigned int> ((<size_t> key) >> 4) & (_SLOTS - 1)


cdef void _add_spec(str key, tuple spec, str section, unsigned long long rules) except *:
    cdef unsigned int slot = _address_slot(<PyObject*> key)
    while _SPECS[slot].key != NULL:
        slot = (slot + 1) & (_SLOTS - 1)
    _SPECS[slot].key = <PyObject*> key
    _SPECS[slot].code = spec[0]
    _SPECS[slot].optional = spec[1]
    _SPECS[slot].has_low = spec[2] is not None
    _SPECS[slot].low = spec[2] if spec[2] is not None else 0.0
    _SPECS[slot].low_open = spec[3]
    _SPECS[slot].has_high = spec[4] is not None
    _SPECS[slot].high = spec[4] if spec[4] is not None else 0.0
    _SPECS[slot].high_open = spec[5]
    _SPECS[slot].check = <PyObject*> spec[6]  # FAST_TABLE keeps it alive
    matched = _MATCHED.get(key)
    _SPECS[slot].matched = <PyObject*> matched  # _MATCHED keeps it alive
    _SPECS[slot].section = <PyObject*> section  # and KEY_SECTION this
    _SPECS[slot].rules = rules


cdef _Spec* _slot_of(key):
    """key's entry, or NULL for a name that is no key."""
    cdef unsigned int slot = _address_slot(<PyObject*> key)
    while _SPECS[slot].key != NULL:
        if _SPECS[slot].key == <PyObject*> key:
            return &_SPECS[slot]
        slot = (slot + 1) & (_SLOTS - 1)
    canonical = _CANONICAL.get(key)  # an equal key from another reader
    return NULL if canonical is None or canonical is key else _slot_of(canonical)


cdef _Spec* _spec_of(key) except NULL:
    cdef _Spec* found = _slot_of(key)
    if found == NULL:
        raise KeyError(key)
    return found


assert len(RULES) <= 64
for _key, _spec in FAST_TABLE.items():  # the same str objects as KEYS', which _known_key gives
    _add_spec(_key, _spec, _KEY_SECTION[_key], sum(1 << i for i, (keys, _) in enumerate(RULES) if _key in keys))


def type_values(dict entries):
    cdef dict final = _DEFAULTS.copy()
    cdef list rest = [], refs = None
    cdef tuple item
    cdef str text
    cdef Py_ssize_t n
    cdef unsigned long long rules = 0
    cdef _Spec* found
    for key, entry in entries.items():
        found = _slot_of(key)
        if found != NULL:
            rules |= found.rules
        item = <tuple> (<tuple> entry)[_ENTRY_ITEM]
        raw = item[_VALUE]
        if type(raw) is not str:
            rest.append(key)
            continue
        text = <str> raw
        n = len(text)
        if item[_QUOTE] != _SINGLE and _has_char(text, u'$'):  # statements.is_interpolated, in C
            rest.append(key)
            if n > 3 and text[0] == u'$' and text[1] == u'{' and PyUnicode_FindChar(text, u'}', 2, n, 1) == n - 1:
                if refs is None:
                    refs = []
                refs.append(key)
            continue
        if found == NULL:
            raise KeyError(key)
        value = _type_text(text, found)
        if value is _NOT_TYPED:
            rest.append(key)
        else:
            PyDict_SetItem(final, key, value)
    if refs is not None:
        for key in refs:
            text = <str> (<tuple> (<tuple> entries[key])[_ENTRY_ITEM])[_VALUE]
            ref = text[2:len(text) - 1]
            if ref not in _FAST_TABLE or ref in rest:
                continue
            value = _type_value(final[ref], _spec_of(key))
            if value is not _NOT_TYPED:
                PyDict_SetItem(final, key, value)
                rest.remove(key)
    return final, rest, rules


cdef object _type_text(str raw, const _Spec* spec):
    cdef Py_ssize_t i, n = len(raw)
    cdef Py_UCS4 c
    cdef long long whole = 0
    cdef double f
    if spec.optional and raw in _NONE_WORDS:
        return None
    cdef int code = spec.code
    if code == _FAST_INT:
        if n == 0 or n > 18:
            return _NOT_TYPED
        for i in range(n):
            c = raw[i]
            if c < u'0' or c > u'9':
                return _NOT_TYPED
            whole = whole * 10 + (<long long> c - 48)
        return whole if _in_range(<double> whole, spec) else _NOT_TYPED
    if code == _FAST_FLOAT:
        if n == 0:
            return _NOT_TYPED
        for c in raw:
            if not ((u'0' <= c <= u'9') or c == u'.' or c == u'e' or c == u'E' or c == u'+' or c == u'-'):
                return _NOT_TYPED
        try:
            f = float(raw)
        except ValueError:
            return _NOT_TYPED
        return f if isfinite(f) and _in_range(f, spec) else _NOT_TYPED
    if code == _FAST_BOOL:
        return _BOOL_WORDS.get(raw, _NOT_TYPED)
    return _type_str(raw, spec)


cdef object _type_str(str raw, const _Spec* spec):
    cdef int code = spec.code
    if (code == _FAST_STR or (code == _FAST_CHOICE and raw in <frozenset> spec.check)
            or (code == _FAST_NONEMPTY and len(raw) > 0) or (code == _FAST_PATTERN and _matches(raw, spec))):
        return raw
    return _NOT_TYPED


cdef bint _matches(str raw, const _Spec* spec) except -1:
    """Whether the pattern matches raw, remembered (a regular expression costs more than a lookup)."""
    cdef dict matched = <dict> spec.matched
    verdict = matched.get(raw)
    if verdict is None:
        verdict = (<object> spec.check)(raw) is not None
        if len(matched) >= _MAX_MATCHED:
            matched.clear()
        matched[raw] = verdict
    return verdict is True


cdef object _type_value(value, const _Spec* spec):
    if type(value) is str:
        return _type_text(<str> value, spec)
    if value is None:
        return None if spec.optional else _NOT_TYPED
    cdef int code = spec.code
    if (code == _FAST_INT and type(value) is int) or (code == _FAST_FLOAT and type(value) is float):
        return value if _in_range(<double> value, spec) else _NOT_TYPED
    if code == _FAST_BOOL and type(value) is bool:
        return value
    return _NOT_TYPED


cdef inline bint _in_range(double value, const _Spec* spec) noexcept:
    if spec.has_low and (value < spec.low or (spec.low_open and value == spec.low)):
        return False
    if spec.has_high and (value > spec.high or (spec.high_open and value == spec.high)):
        return False
    return True


# ---- sorting statements into assignments (see slo.formats.config_lang.read_config) ---

cdef class _Index:
    """Statements sorted as they are scanned, as the twin's _index_statements and chain sort them."""

    cdef list bases, sets, env, problems
    cdef dict entries, env_entries
    cdef object path
    cdef bint others

    def __cinit__(self, path):
        self.path = path
        self.bases, self.sets, self.env, self.problems = [], [], [], []
        self.entries, self.env_entries = {}, {}
        self.others = False

    cdef void add(self, str directive, Py_ssize_t line, Py_ssize_t col, list items) except *:
        cdef tuple item
        cdef _Spec* found
        if directive is _FROM:
            if self.others:
                self.problems.append(("late-from", (directive, line, col, items), None))
            else:
                self.bases.extend(items)
            return
        self.others = True
        if directive is _ENV:
            for item in items:
                self.keep(self.env_entries, self.env, item, directive, line, col, items)
        elif directive in _SECTIONS:
            for item in items:
                found = _slot_of(item[_KEY])
                section = None if found == NULL else <object> found.section
                if section is not directive and section != directive:
                    self.problems.append(("key", (directive, line, col, items), item))
                else:
                    self.keep(self.entries, self.sets, item, directive, line, col, items)
        else:
            self.problems.append(("directive", (directive, line, col, items), None))

    cdef void keep(self, dict entries, list kept, tuple item, str directive, Py_ssize_t line, Py_ssize_t col,
                   list items) except *:
        """Keeps item, its provenance entry over the one it overrides; a name set again is a "twice" problem."""
        key = item[_KEY]
        entry = _untracked((item, self.path, None))
        below = <object> PyDict_SetDefault(entries, key, entry)  # one lookup where the name is new
        if below is not entry:
            self.problems.append(("twice", (directive, line, col, items), item))
            entries[key] = _untracked((item, self.path, below))
        kept.append(item)


def chain(list items, path):
    cdef dict entries = {}
    cdef tuple item
    for item in items:
        key = item[_KEY]
        entries[key] = (item, path, entries.get(key))
    return entries
