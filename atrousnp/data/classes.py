"""Class names: PASCAL VOC's 21, or a dataset's own, read from a text file of one name per line."""

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def read_class_names(path):
    """The names in a UTF-8 text file, one per line, class 0 first.

    Lines are split on ``\\n`` alone (a Windows ``\\r\\n`` ending is stripped with the other
    surrounding spaces), so that a name can never be cut in two by a character that some
    programs also treat as a line break (``\\r``, ``\\f``, U+2028). Blank lines at the end are
    ignored; a blank line before a name would shift every later class, and is refused."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error})") from None
    lines = [line.strip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return check_class_names(lines, str(path))


def check_class_names(names, where="class_names"):
    """``names`` as a tuple, after refusing an empty list, a blank name, a name with a
    control character, and a name given twice (its IoU would overwrite the other's)."""
    names = tuple(names)
    if not names:
        raise ValueError(f"{where} lists no class names")
    seen = {}
    for line, name in enumerate(names, start=1):
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise ValueError(f"{where}, line {line}: {name!r} is not a class name (blank, or holds a control or "
                             "line-break character)")
        if name in seen:
            raise ValueError(f"{where}, line {line}: {name!r} is class {seen[name]} already")
        seen[name] = line - 1
    return names
