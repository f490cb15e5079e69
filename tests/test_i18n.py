"""Simplified Chinese: the catalog is complete, and browsers asking for Chinese get it."""

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings

PO = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")


def po_entries(path: Path) -> list[dict]:
    """The live entries of a .po file as {"flags", "msgid", "msgid_plural", "msgstr": [...]}; standard library only.

    Entries are separated by blank lines (as makemessages writes them); obsolete `#~` entries are skipped."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if not any(line.startswith("msgid") for line in lines):  # comments only, or an obsolete entry
            continue
        entry = {"flags": set(), "msgid": "", "msgid_plural": None, "msgstr": []}
        field = None
        for line in lines:
            if line.startswith("#,"):
                entry["flags"].update(flag.strip() for flag in line[2:].split(","))
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                value = ast.literal_eval(line)
                if field == "msgstr":
                    entry["msgstr"][-1] += value
                else:
                    entry[field] += value
            else:
                keyword, _, rest = line.partition(" ")
                value = ast.literal_eval(rest)
                if keyword.startswith("msgstr"):
                    field = "msgstr"
                    entry["msgstr"].append(value)
                else:
                    field = keyword
                    entry[field] = value
        entries.append(entry)
    return entries


def test_every_message_has_a_chinese_translation_and_none_is_fuzzy():
    entries = po_entries(PO)
    header, messages = entries[0], entries[1:]
    assert header["msgid"] == ""
    assert "fuzzy" not in header["flags"]
    assert "nplurals=1; plural=0;" in header["msgstr"][0]
    assert len(messages) > 200
    untranslated = [e["msgid"] for e in messages if not e["msgstr"] or not all(s.strip() for s in e["msgstr"])]
    fuzzy = [e["msgid"] for e in messages if "fuzzy" in e["flags"]]
    wrong_plurals = [e["msgid"] for e in messages if e["msgid_plural"] is not None and len(e["msgstr"]) != 1]
    assert untranslated == []
    assert fuzzy == []
    assert wrong_plurals == []


@pytest.mark.django_db
@pytest.mark.parametrize("accept_language", ["zh-hans", "zh-Hans", "zh-CN", "zh-cn,zh;q=0.9,en;q=0.8", "zh"])
def test_chinese_browsers_get_the_catalog_in_chinese(client, accept_language):
    assert MO.exists(), "compile the catalogs first: `make messages` (manage.py compilemessages)"
    response = client.get("/", HTTP_ACCEPT_LANGUAGE=accept_language)
    body = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="zh-hans">' in body
    assert "模型发布" in body
    assert "登录" in body and "注册" in body


@pytest.mark.django_db
def test_other_browsers_keep_english(client):
    body = client.get("/", HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9").content.decode()
    assert '<html lang="en">' in body
    assert "Model releases" in body
    assert "模型发布" not in body


GLOSSARY = Path(settings.BASE_DIR) / "docs" / "glossary.md"


def glossary() -> dict[str, str]:
    rows = [line.split("|")[1:3] for line in GLOSSARY.read_text().splitlines() if line.startswith("| ")]
    return {english.strip(): chinese.strip() for english, chinese in rows[1:]}


def test_a_release_is_called_by_the_glossarys_one_term_everywhere():
    term = glossary()["release"]
    assert term == "发布版本"
    wrong = []
    for entry in po_entries(PO)[1:]:
        english = re.sub(r"<code>.*?</code>|release[- ]managers?", "", entry["msgid"], flags=re.I)
        if not re.search(r"\breleases?\b|\brelease's\b", english, re.I):
            continue
        chinese = entry["msgstr"][0]
        # 版本 alone is a license's version ("this version"), never a release.
        alone = "此版本" in chinese and "version" not in english.lower()
        if term not in chinese or alone or "受限版本" in chinese or "开放版本" in chinese:
            wrong.append((entry["msgid"], chinese))
    assert wrong == []


def test_chinese_punctuation_is_full_width():
    cjk = "\u4e00-\u9fff"
    half = re.compile(rf"[{cjk}][:,;?!()]|[:,;?!()][{cjk}]")
    wrong = [s for entry in po_entries(PO)[1:] for s in entry["msgstr"] if half.search(s)]
    assert wrong == []


@pytest.mark.parametrize(("language", "shown"), [("en", "Status: "), ("zh-hans", "状态：")])
def test_a_label_is_followed_by_the_colon_of_its_language(language, shown):
    from django.template import Context, Template
    from django.utils import translation

    with translation.override(language):
        text = Template('{% load i18n portal %}{% translate "Status" %}{% colon %}').render(Context())
    assert text == shown
