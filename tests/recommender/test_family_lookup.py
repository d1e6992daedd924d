"""Looking a family up by name imports that family's module, not every family's.

The gate asks for ``als`` only; discovering every family imported the neural ones and torch with them, seconds
of the gate's own time for a model it never trains. Each case runs in a fresh interpreter, since this test
process has imported every family already.
"""

from __future__ import annotations

from tests.fresh_interpreter import fresh


def test_get_family_als_imports_neither_the_other_families_nor_torch():
    seen = fresh(
        "import json, sys\n"
        "from recommender.family import get_family\n"
        "family = get_family('als')\n"
        "print(json.dumps({'name': family.name, 'torch': 'torch' in sys.modules,\n"
        "    'modules': sorted(m for m in sys.modules if m.startswith('recommender.families.'))}))\n"
    )
    assert seen == {"name": "als", "torch": False, "modules": ["recommender.families._shared", "recommender.families.als"]}


def test_a_family_named_unlike_its_module_and_an_unknown_name_still_see_every_family():
    seen = fresh(
        "import json\n"
        "from recommender.errors import ConfigError\n"
        "from recommender.family import families, get_family\n"
        "get_family('als')\n"
        "names = {n: get_family(n).name for n in ('popularity', 'random', 'content_tfidf')}\n"
        "try:\n"
        "    get_family('no_such_family')\n"
        "except ConfigError as err:\n"
        "    message = str(err)\n"
        "print(json.dumps({'names': names, 'message': message, 'all': sorted(families())}))\n"
    )
    assert seen["names"] == {"popularity": "popularity", "random": "random", "content_tfidf": "content_tfidf"}
    assert seen["message"] == "unknown model family 'no_such_family'; the families are: " + ", ".join(seen["all"])
    assert {"als", "ncf", "two_tower", "session", "popularity"} <= set(seen["all"])
