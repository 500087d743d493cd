import bakeoff


def test_all_names_are_exported_and_sorted():
    for name in bakeoff.__all__:
        assert hasattr(bakeoff, name), name
    assert bakeoff.__all__ == sorted(bakeoff.__all__, key=lambda s: (not s[0].isupper(), s))


def test_public_names_match_all():
    public = {n for n in dir(bakeoff) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(bakeoff, n)).__name__ == "module"}
    assert public - modules == set(bakeoff.__all__) - {"__version__"}
