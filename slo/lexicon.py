"""What the two tokenizer twins (``_parser_py.py``, ``_parser.pyx``) share: escapes and error messages.

Each message is a ``str.format`` template where it names what was written.
"""

# A backslash and the character after it, in a double-quoted string -> the text they stand for.
# \$ becomes $$, which interpolation reads as a literal $.
ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "$": "$$"}

QUOTE_IN_WORD = "Unexpected quote inside a bare value; quote the whole value instead"
UNTERMINATED_SINGLE = "Unterminated single-quoted string: add the closing '"
UNTERMINATED_DOUBLE = 'Unterminated double-quoted string: add the closing "'
UNKNOWN_ESCAPE = ("Unknown escape {escape} in a double-quoted string"
                  " (known: \\\" \\\\ \\n \\t \\$; single quotes take text as written)")
SPACE_AFTER_QUOTE = "Expected whitespace after the closing quote"
SPACE_AROUND_EQUALS = "No whitespace is allowed around '=': write {key}={value}"
MISSING_VALUE = 'Missing value after {key}=; write {key}="" for an empty string'
HASH_STARTS_VALUE = 'A bare value cannot start with #; quote it: {key}="#..."'
STRAY_EQUALS = "Stray '=' with no key before it"
INVALID_KEY = "Invalid key {key!r}: a key is letters, digits and _, not starting with a digit"
QUOTED_KEY = "Expected key=value, found a quoted string"
NO_EQUALS = "Expected key=value, found {key!r} with no '='"
NO_DIRECTIVE = "Expected a directive (such as MODEL or DATA) before {word}"
NOT_A_DIRECTIVE = "Expected a directive name, found {word!r}"
FROM_WITHOUT_PATH = "FROM needs at least one path"
