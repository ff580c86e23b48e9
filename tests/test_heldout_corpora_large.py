"""The large held-out corpora of benchmarks/corpora/: what each source keeps and leaves out, the cleaning
every document goes through, the cap on training characters, and a build's splits and manifest, all on
small synthetic sources."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from benchmarks.corpora import build, documents, go_source, linux_source
from benchmarks.corpora.first_seven import SPLITS, split_of
from benchmarks.corpora.french_docs import help_page_text
from textlstm.data.corpora.files import load_path


def _names_in(split: str, count: int, prefix: str = "doc") -> list[str]:
    names = (f"{prefix}{index}" for index in range(10_000))
    return [name for name in names if split_of(name) == split][:count]


def test_files_are_decoded_as_utf8_with_one_kind_of_line_end_and_binary_or_other_encodings_refused():
    assert documents.decoded("a\r\nb\rc\né".encode()) == "a\nb\nc\né"
    assert documents.decoded("é".encode("latin-1")) is None
    assert documents.decoded(b"ELF\0\1\2") is None


def test_number_tables_are_told_from_code_that_uses_numbers():
    table = "static const u16 map[] = {\n" + "\t0x3000, 0x3001, 0x3002, 0x00A7,\n" * 50 + "};\n"
    vectors = 'static const char key[] = "' + "\\x01\\xfe" * 100 + '";\n'
    code = "for (i = 0; i < 16; i++)\n\tbuf[i] = read_reg(dev, 0x10 + i);\nreturn ret;\n"
    assert documents.is_number_table(table)
    assert documents.is_number_table(vectors)
    assert not documents.is_number_table(code)
    assert not documents.is_number_table("")


def test_a_text_seen_under_an_earlier_name_is_left_out_so_no_text_sits_in_two_splits():
    kept = documents.unique([("bash.1", "the shell"), ("rbash.1", "the shell"), ("sh.1", "another")])
    assert kept == [("bash.1", "the shell"), ("sh.1", "another")]


def test_hash_order_is_a_stable_shuffle_whatever_the_input_order():
    names = [f"fs/file{index}.c" for index in range(100)]
    ordered = documents.hash_order(names)
    assert sorted(ordered) == sorted(names)
    assert ordered == documents.hash_order(reversed(names))
    assert ordered != sorted(names)


def test_the_cap_counts_training_characters_only_and_stops_at_the_first_training_document_past_it():
    train, held_out = _names_in("train", 4), _names_in("test", 2)
    given = [
        (train[0], "a" * 40),
        (held_out[0], "b" * 500),
        (train[1], "c" * 50),
        (train[2], "d" * 20),
        (held_out[1], "e" * 10),
        (train[3], "f" * 5),
    ]
    kept = documents.capped_by_training(given, max_train_chars=100)
    # 40 + 50 = 90; the 20 of the next training document would pass 100: the rest is left out
    assert kept == given[:3]
    assert documents.capped_by_training(given, max_train_chars=10_000) == given


def test_word_types_are_the_distinct_whitespace_separated_words():
    assert documents.word_types(["a b\ta\n", "b, c"]) == 4  # a, b, "b,", c


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:xz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(f"linux-source-6.1/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def test_linux_documentation_is_the_english_rst_and_txt_files_in_path_order(tmp_path):
    tarball = _tarball(
        tmp_path / "linux.tar.xz",
        {
            "Documentation/process/howto.rst": b"HOWTO\n=====\r\n",
            "Documentation/admin-guide/README.txt": b"Read me.\n",
            "Documentation/translations/zh_CN/howto.rst": "\u5982\u4f55".encode(),
            "Documentation/logo.svg": b"<svg/>",
            "Documentation/empty.rst": b"\n\n",
            "Documentation/latin1.txt": "caf\u00e9".encode("latin-1"),
            "kernel/fork.c": b"int x;\n",
        },
    )
    assert linux_source.documentation_documents(tarball) == [
        ("Documentation/admin-guide/README.txt", "Read me.\n"),
        ("Documentation/process/howto.rst", "HOWTO\n=====\n"),
    ]
    assert linux_source.documentation_documents(tmp_path / "missing.tar.xz") is None


def test_linux_c_is_the_core_folders_c_and_h_files_without_number_tables(tmp_path):
    code = b"static int add(int a, int b)\n{\n\treturn a + b;\n}\n"
    table = b"static const u8 font[] = {\n" + b"\t0x00, 0x7e, 0x81, 0xa5,\n" * 40 + b"};\n"
    tarball = _tarball(
        tmp_path / "linux.tar.xz",
        {
            "kernel/sched/core.c": code,
            "mm/slab.h": code,
            "include/linux/list.h": code,
            "lib/fonts/font_8x8.c": table,
            "drivers/net/e1000.c": code,
            "arch/x86/boot.c": code,
            "kernel/Makefile": b"obj-y += fork.o\n",
        },
    )
    found = linux_source.c_documents(tarball)
    assert sorted(name for name, _ in found) == ["include/linux/list.h", "kernel/sched/core.c", "mm/slab.h"]
    assert [name for name, _ in found] == documents.hash_order(name for name, _ in found)
    assert all(text == code.decode() for _, text in found)


def test_go_source_leaves_out_testdata_vendor_generated_files_and_tables(tmp_path):
    files = {
        "fmt/print.go": "package fmt\n\nfunc Println() {}\n",
        "fmt/print_test.go": "package fmt\n\nfunc TestPrintln(t *testing.T) {}\n",
        "go/parser/testdata/broken.go": "package p\n\nfunc {\n",
        "vendor/golang.org/x/net/http.go": "package http\n",
        "syscall/zerrors_linux.go": "// mkerrors\n// Code generated by the command above; DO NOT EDIT.\n\npackage x\n",
        "unicode/table.go": "package unicode\n\nvar t = []int{" + "0x0041, 0x005a, " * 100 + "}\n",
        "cmd/go/script_test.go": "package main\n\nconst s = `\n// Code generated by x. DO NOT EDIT.\n`\n",
        "notes.txt": "not Go\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = dict(go_source.go_documents(tmp_path))
    assert sorted(found) == ["cmd/go/script_test.go", "fmt/print.go", "fmt/print_test.go"]
    assert go_source.go_documents(tmp_path / "missing") is None


def test_a_libreoffice_help_page_gives_its_content_area_one_line_per_block():
    page = """<html><head><title>Orthographe</title><script>var x = "<p>no</p>";</script></head><body>
<header><p>Aide LibreOffice 7.4</p></header><aside><div id="Index"><div>Index</div></div></aside>
<div id="DisplayArea"><h1>Orthographe</h1>
  <p class="paragraph"><span class="avis">V\u00e9rifie   les fautes
  d'orthographe</span> du document.</p>
  <div class="note"><div class="notetext"><p>Touche&nbsp;F7 &amp; ic\u00f4ne</p></div></div>
  <p>Choisissez <span class="switchinline"><span hidden="true" id="MACtextshared_1">LibreOffice - Pr\u00e9f\u00e9rences
  </span><span hidden="true" id="defaulttextshared_1"><span class="menuitem">Outils - Options</span></span></span>.</p>
  <table><tr><td>Ignorer</td><td>Tout ignorer</td></tr></table>
  <style>p { color: red }</style>
  <div class="bascode"><pre dir="auto"><code class="language-visual-basic">
    Sub Main
        MsgBox "Bonjour"

    End Sub
  </code></pre></div>
</div><div id="SearchFrame">Rechercher</div><footer><p>This page is: 06010000.xhp</p></footer></body></html>"""
    assert help_page_text(page) == (
        "Orthographe\nV\u00e9rifie les fautes d'orthographe du document.\nTouche F7 & ic\u00f4ne\n"
        "Choisissez Outils - Options.\nIgnorer\nTout ignorer\n"
        'Sub Main\n    MsgBox "Bonjour"\nEnd Sub'
    )


def test_a_build_writes_whole_documents_to_one_split_each_and_lists_their_sizes(tmp_path, monkeypatch):
    texts = [f"line {index}\nsecond line of document {index}\n" for index in range(300)]
    corpus = [(f"page{index}", text) for index, text in enumerate(texts)] + [("copy-of-page0", texts[0])]
    monkeypatch.setitem(build.LARGE_CORPORA, "linux-docs", build.LargeCorpus(lambda: corpus, "apt-get install x"))
    (tmp_path / "manifest.json").write_text(json.dumps({"german": {"kept": True}}))

    manifest = build.build(tmp_path, ("linux-docs",))

    sizes = manifest["linux-docs"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert manifest["german"] == {"kept": True}
    written = {
        split: [json.loads(line)["text"] for line in open(tmp_path / "linux-docs" / f"{split}.jsonl")]
        for split in SPLITS
    }
    assert sorted(sum(written.values(), [])) == sorted(texts)  # every document whole, once, the copy left out
    for split in SPLITS:
        assert sizes[split]["names"] == [name for name, _ in corpus[:300] if split_of(name) == split]
        assert sizes[split]["chars"] == sum(map(len, written[split]))
        assert sizes[split]["word_types"] == documents.word_types(written[split])
    assert sizes["train"]["word_types"] > 0
    loaded = load_path(tmp_path / "linux-docs")
    assert loaded.splits["test"]["text"] == written["test"]


def test_a_missing_source_is_skipped_with_what_installs_it_and_an_unknown_name_is_one_error(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(build.LARGE_CORPORA, "go-source", build.LargeCorpus(lambda: None, "apt-get install go-src"))
    assert build.build(tmp_path, ("go-source",)) == {}
    assert "go-source: skipped, its source is missing (needs apt-get install go-src)" in capsys.readouterr().out
    assert not (tmp_path / "go-source").exists()
    with pytest.raises(SystemExit, match="error: unknown corpus nope"):
        build.build(tmp_path, ("nope",))


def test_the_held_out_benchmark_knows_the_large_corpora_by_name_and_builds_one_that_is_missing(tmp_path, monkeypatch):
    from benchmarks.heldout import run as heldout

    assert set(build.LARGE_CORPORA) < set(heldout.CORPORA)
    corpus = [(f"page{index}", f"text {index}") for index in range(100)]
    monkeypatch.setitem(build.LARGE_CORPORA, "linux-docs", build.LargeCorpus(lambda: corpus, "apt-get install x"))
    assert heldout.ensure_corpora(tmp_path, ["linux-docs"]) == ["linux-docs"]
    assert all((tmp_path / "linux-docs" / f"{split}.jsonl").is_file() for split in SPLITS)
