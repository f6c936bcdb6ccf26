"""Class names: PASCAL VOC's 21, or a dataset's own, read from a text file of one name per line."""

import unicodedata
from pathlib import Path

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def read_class_names(path):
    """The names in a UTF-8 text file, one per line, class 0 first.

    Lines are split on ``\n`` alone (a Windows ``\r\n`` ending, a byte-order mark and the
    spaces around a name are stripped), so that a name is never cut in two by a character
    that some programs also treat as a line break (``\r``, ``\f``, U+2028). Blank lines at the
    end are ignored; a blank line before a name would shift every later class, and is refused."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error})") from None
    lines = [line.strip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return check_class_names(lines, str(path), numbered="line")


def check_class_names(names, where="class_names", numbered="name"):
    """``names`` (a list or tuple of strings) as a tuple, after refusing an empty list, a blank
    name, a name holding a control or line-break character, and a name given twice (its IoU
    would overwrite the other's). Errors count ``numbered`` from 1 ("line 3", "name 3")."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(f"{where} must be a list of names, got {type(names).__name__}")
    if not names:
        raise ValueError(f"{where} lists no class names")
    seen = {}
    for number, name in enumerate(names, start=1):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}, {numbered} {number}: {name!r} is not a class name (blank, or not text)")
        breaking = [c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
        if breaking:
            raise ValueError(f"{where}, {numbered} {number}: {name!r} holds U+{ord(breaking[0]):04X} "
                             f"({unicodedata.name(breaking[0], 'a control character')}), a control or line-break "
                             "character")
        if name in seen:
            raise ValueError(f"{where}, {numbered} {number}: {name!r} is class {seen[name]} already")
        seen[name] = number - 1
    return tuple(names)
