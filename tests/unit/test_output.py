"""The helpers that make human output fit the terminal: measuring, shortening, wrapping, tables, `~`."""

from __future__ import annotations

import pytest

from torchdoctor.agent.output import (
    ELLIPSIS,
    Fit,
    display_path,
    display_width,
    home_text,
    paint,
    shorten,
    split_commands,
    strip_ansi,
    table,
    terminal_width,
    wrap,
)

HOME = "/home/ana"
PATHS = [
    "/home/ana/code/clients/a-rather-long-client-name/image-segmentation/2026-spring/.venv",
    "/opt/conda/envs/ml",
    "/home/ana/.local/share/uv/python/cpython-3.12.4-linux-x86_64-gnu",
]
TORCH = ["2.7.1+cu128 | vision 0.22.1+cu128 | audio 2.7.1+cu128", "2.5.1+cpu", "-"]
STATUS = ["ok", "broken", "no-torch"]
COLOUR = {"ok": "green", "broken": "red", "no-torch": "dim"}
PIP = (
    "/home/ana/proj/.venv/bin/python -m pip install torch==2.7.1+cu128 torchvision==0.22.1+cu128 "
    "--index-url https://download.pytorch.org/whl/cu128"
)


def test_colour_codes_and_wide_characters_are_measured_as_the_terminal_shows_them() -> None:
    assert display_width(paint("broken", "red", True)) == 6
    assert display_width("\033[1m\033[31mab\033[0m") == 2
    assert display_width("日本") == 4
    assert display_width("e\u0301") == 1  # a combining accent takes no column


def test_terminal_width_honours_columns_and_is_80_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "133")
    assert terminal_width() == 133
    monkeypatch.delenv("COLUMNS")
    assert terminal_width() == 80  # pytest captures stdout: not a terminal
    monkeypatch.setenv("COLUMNS", "5")
    assert terminal_width() == 20  # nothing readable fits below 20


@pytest.mark.parametrize("width", [8, 12, 20, 30, 40])
def test_a_path_is_shortened_in_the_middle_keeping_its_end(width: int) -> None:
    path = PATHS[0]
    short = shorten(path, width, fit=Fit.PATH)
    assert display_width(short) <= width
    assert short.count(ELLIPSIS) == 1
    if width >= 7:
        assert short.endswith("/.venv")


def test_a_path_keeps_whole_folder_names_from_both_ends() -> None:
    assert shorten("/home/ana/code/projects/proj/.venv", 22, fit=Fit.PATH) == "/home/ana/…/proj/.venv"
    assert shorten("~/code/projects/proj/.venv", 20, fit=Fit.PATH) == "~/code/…/proj/.venv"
    assert shorten(r"C:\Users\ana\code\projects\proj\.venv", 24, fit=Fit.PATH) == r"C:\Users\…\proj\.venv"
    assert shorten("/x/y", 10, fit=Fit.PATH) == "/x/y"  # it fits: unchanged


def test_text_is_shortened_at_the_end_and_keeps_its_colour() -> None:
    assert shorten("2.7.1+cu128 | vision 0.22.1+cu128", 14) == "2.7.1+cu128 |…"
    coloured = shorten(paint("some environments are broken", "red", True), 10)
    assert strip_ansi(coloured) == "some envi…"
    assert coloured.startswith("\033[31m") and coloured.endswith("\033[0m")
    assert shorten("broken", 3, fit=Fit.KEEP) == "broken"


@pytest.mark.parametrize("width", [40, 80, 200])
@pytest.mark.parametrize("colour", [False, True])
def test_a_table_fits_its_width(width: int, colour: bool) -> None:
    rows = [
        [display_path(p, home=HOME), "3.12.4", t, paint(s, COLOUR[s], colour)]
        for p, t, s in zip(PATHS, TORCH, STATUS, strict=True)
    ]
    fits = (Fit.PATH, Fit.KEEP, Fit.END, Fit.KEEP)
    lines = table(rows, ["ENVIRONMENT", "PYTHON", "TORCH", "STATUS"], width=width, fit=fits)
    assert len(lines) == 4
    assert all(display_width(line) <= width for line in lines)
    assert ("\033[" in "".join(lines)) is colour
    plain = [strip_ansi(line) for line in lines]
    assert plain[0].split() == ["ENVIRONMENT", "PYTHON", "TORCH", "STATUS"]
    # STATUS and PYTHON are never cut, and the columns stay aligned however much was cut.
    assert [line.split()[-1] for line in plain[1:]] == STATUS
    column = plain[0].index("PYTHON")
    assert all(line[column:].startswith("3.12.4") for line in plain[1:])
    if width == 200:
        assert plain[1].startswith("~/code/clients/a-rather-long-client-name/") and ELLIPSIS not in plain[1]
        assert "audio 2.7.1+cu128" in plain[1]
    else:
        assert plain[1].startswith("~/") and ELLIPSIS in plain[1]
    assert plain[2].startswith("/opt/conda/envs/ml" if width > 40 else "/…/envs/ml")


def test_a_wrapped_column_makes_a_row_several_lines_high() -> None:
    detail = "CUDA is not available: this torch is a CPU-only build (2.13.0+cpu) on a machine with a GPU"
    lines = table(
        [["cuda-available", "FAIL", detail], ["matmul-fp32", "pass", "max error 1e-6"]],
        ["CHECK", "RESULT", "DETAIL"],
        width=40,
        fit=(Fit.END, Fit.KEEP, Fit.WRAP),
    )
    assert all(display_width(line) <= 40 for line in lines)
    start = lines[0].index("DETAIL")
    body = lines[1 : lines.index(next(line for line in lines if line.startswith("matmul-fp32")))]
    assert len(body) > 1 and all(line[:start].strip() == "" for line in body[1:])
    assert " ".join(line[start:] for line in body) == detail


def test_without_a_width_a_table_is_as_wide_as_its_cells() -> None:
    lines = table([[PATHS[0], "ok"]], ["PATH", "STATUS"])
    assert lines[1] == f"{PATHS[0]}  ok"


@pytest.mark.parametrize("width", [40, 80, 200])
def test_free_text_wraps_with_a_hanging_indent(width: int) -> None:
    text = (
        "torch 2.5.1+cpu is a CPU-only build, so it cannot use the NVIDIA GeForce RTX 4090 (sm_89); "
        "GPU code fails with 'Torch not compiled with CUDA enabled'."
    )
    tag = paint("error", "red", True)
    lines = wrap(text, width, first=f"  {tag} ", rest=" " * 8)
    assert all(display_width(line) <= width for line in lines)
    assert all(line.startswith(" " * 8) for line in lines[1:])
    assert " ".join(strip_ansi(line).strip() for line in lines) == f"error {text}"
    assert (len(lines) == 1) is (width == 200)


@pytest.mark.parametrize("width", [40, 80])
def test_commands_and_urls_stay_whole_on_their_own_line(width: int) -> None:
    fix = f"run `torchdoctor fix --env /home/ana/proj/.venv`, or by hand: {PIP}"
    lines = wrap(fix, width, first="        fix: ")
    assert f"{' ' * 13}{PIP}" in lines  # the whole command, alone, even past the width
    assert any("`torchdoctor fix --env /home/ana/proj/.venv`," in line for line in lines)
    for line in lines:
        if display_width(line) > width:
            assert line.strip() in (PIP, "`torchdoctor fix --env /home/ana/proj/.venv`,")
    url = "https://aka.ms/vs/17/release/vc_redist.x64.exe"
    hint = wrap(f"install the Visual C++ Redistributable ({url}); then retry", 30, first="  hint: ")
    assert any(url in line for line in hint) and all(display_width(line) <= 30 for line in hint[:1])


def test_a_label_is_alone_when_its_first_word_does_not_fit() -> None:
    assert wrap("/a/very/long/path/to/an/environment", 20, first="environment: ") == [
        "environment:",
        "             /a/very/long/path/to/an/environment",
    ]


def test_commands_are_found_in_free_text() -> None:
    text = f"reinstall: run `torchdoctor fix --env /x`, or by hand: {PIP}"
    assert [piece for piece, cmd in split_commands(text) if cmd] == ["`torchdoctor fix --env /x`", PIP]
    uv = "uv pip install --python /x/bin/python torch==2.7.1+cpu --index-url https://h/cpu"
    assert split_commands(f"switch to the CPU build: {uv}")[-1] == (uv, True)
    assert split_commands("the driver is too old: update it") == [("the driver is too old: update it", False)]


def test_home_reads_tilde_in_text_but_never_inside_a_command() -> None:
    assert display_path("/home/ana/proj/.venv", home=HOME) == "~/proj/.venv"
    assert display_path("/home/ana", home=HOME) == "~"
    assert display_path("/home/anabel/x", home=HOME) == "/home/anabel/x"
    assert display_path("/srv/home/ana/x", home=HOME) == "/srv/home/ana/x"
    text = f"/home/ana/proj is broken: run `torchdoctor fix --env '/home/ana/my proj'`, or by hand: {PIP}"
    assert home_text(text, home=HOME) == (
        f"~/proj is broken: run `torchdoctor fix --env '/home/ana/my proj'`, or by hand: {PIP}"
    )
    assert home_text("config.toml lists /home/ana/gone.", home=HOME) == "config.toml lists ~/gone."


def test_a_windows_home_reads_tilde_too() -> None:
    home = r"C:\Users\ana"
    assert display_path(r"C:\Users\ana\proj\.venv", home=home) == r"~\proj\.venv"
    assert display_path(r"C:\Users\anabel", home=home) == r"C:\Users\anabel"
