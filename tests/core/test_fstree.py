"""fstree: iterative, symlink-safe walks and removals of trees tenants made.

Every tree here is made under ``tmp_path`` and every removal acts on a path
under it. Paths that name no entry of their own (``.``, ``..``, ``/``, empty)
are only ever given to :func:`removable_root`, or to :func:`remove_tree` from a
sacrificial working folder under ``tmp_path``, so a regression cannot reach
anything else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rostergate import fstree
from rostergate.fstree import TooManyEntries, TreeChanged, removable_root, remove_tree, walk, walk_files

DEEP = 3000


def _under(path: Path, base: Path) -> Path:
    """``path``, after checking it lies under ``base`` (the only kind of path a test removes)."""
    assert Path(os.path.abspath(path)).is_relative_to(base) and Path(os.path.abspath(path)) != base
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry below ``folder`` (not following links): relative path -> kind or file text."""
    found: dict[str, str] = {}
    for entry in walk(folder):
        if entry.is_file():
            found[entry.relative] = (folder / entry.relative).read_text()
        else:
            found[entry.relative] = "dir" if entry.is_dir() else "link"
    return found


@pytest.fixture
def world(tmp_path):
    """parent/{root/{a/b/c/deep.txt, a/top.txt, out -> ../outside, up -> .., self -> .}, outside/{o.txt,
    sub/s.txt}, sibling.txt}; returns (parent, root, outside)."""
    parent = tmp_path / "parent"
    root = parent / "root"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.txt").write_text("deep")
    (root / "a" / "top.txt").write_text("top")
    outside = parent / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "o.txt").write_text("outside")
    (outside / "sub" / "s.txt").write_text("outside-sub")
    (parent / "sibling.txt").write_text("sibling")
    (root / "out").symlink_to("../outside")
    (root / "a" / "b" / "up").symlink_to("../..")
    (root / "self").symlink_to(".")
    return parent, root, outside


# -- walk ----------------------------------------------------------------------------
def test_walk_lists_links_as_entries_and_never_enters_them(world):
    _, root, _ = world
    entries = {e.relative: e for e in walk(root)}
    assert set(entries) == {"a", "a/b", "a/b/c", "a/b/c/deep.txt", "a/b/up", "a/top.txt", "out", "self"}
    assert not entries["out"].is_dir() and not entries["self"].is_dir() and not entries["a/b/up"].is_dir()
    assert entries["a/b/c/deep.txt"].depth == 4
    assert [e.relative for e in walk_files(root)] == ["a/top.txt", "a/b/c/deep.txt"]
    assert fstree.tree_height(root, 100) == 4


def test_walk_lists_folders_before_their_contents_in_name_order(world):
    _, root, _ = world
    order = [e.relative for e in walk(root)]
    assert order == ["a", "out", "self", "a/b", "a/top.txt", "a/b/c", "a/b/up", "a/b/c/deep.txt"]


def test_walk_excludes_what_it_is_told_to(world):
    _, root, _ = world
    assert {e.relative for e in walk(root, exclude={"a/b"})} == {"a", "a/top.txt", "out", "self"}


def test_walk_stops_after_max_entries(world):
    _, root, _ = world
    seen: list[str] = []
    with pytest.raises(TooManyEntries) as caught:
        for entry in walk(root, max_entries=5):
            seen.append(entry.relative)
    assert caught.value.limit == 5 and len(seen) == 5
    assert len(list(walk(root, max_entries=8))) == 8  # exactly the limit is fine


def test_walk_of_a_symlinked_root_is_refused(world):
    parent, _, _ = world
    (parent / "root-link").symlink_to("outside")
    with pytest.raises(OSError):
        list(walk(parent / "root-link"))


def test_walk_raises_when_a_folder_is_moved_out_from_under_it(world, monkeypatch):
    """The climb back through ``..`` checks it reaches the folder it came from, never another."""
    parent, root, outside = world
    real_enter = fstree._enter

    def enter_then_move(fd, name, identity):
        child = real_enter(fd, name, identity)
        if name == "a":  # the tenant moves the folder being walked outside the root
            os.rename(root / "a", outside / "a")
        return child

    monkeypatch.setattr(fstree, "_enter", enter_then_move)
    with pytest.raises(TreeChanged):
        list(walk(root))


# -- remove_tree ---------------------------------------------------------------------
def test_remove_tree_touches_nothing_outside_root(world):
    parent, root, outside = world
    before = _snapshot(outside)
    assert remove_tree(_under(root, parent)) == 9  # 4 folders, 2 files, 3 links
    assert not os.path.lexists(root)
    assert _snapshot(outside) == before and before["o.txt"] == "outside"
    assert (parent / "sibling.txt").read_text() == "sibling"
    assert sorted(p.name for p in parent.iterdir()) == ["outside", "sibling.txt"]


def test_remove_tree_with_a_relative_root_from_a_changed_cwd(world, monkeypatch):
    parent, root, outside = world
    before = _snapshot(outside)
    monkeypatch.chdir(parent)
    remove_tree("root")
    assert not os.path.lexists(root) and _snapshot(outside) == before
    assert sorted(p.name for p in parent.iterdir()) == ["outside", "sibling.txt"]
    monkeypatch.chdir(outside)
    remove_tree(Path("sub"))
    assert sorted(p.name for p in outside.iterdir()) == ["o.txt"] and parent.exists()


@pytest.mark.parametrize("spelling", ["plain", "trailing-slash", "bytes-trailing-slash"])
def test_remove_tree_of_a_symlink_removes_the_link_not_its_target(world, spelling):
    parent, _, outside = world
    link = parent / "link"
    link.symlink_to(outside)
    before = _snapshot(outside)
    root = {"plain": link, "trailing-slash": f"{link}/", "bytes-trailing-slash": os.fsencode(f"{link}//")}[spelling]
    assert remove_tree(root) == 1
    assert not os.path.lexists(link) and _snapshot(outside) == before


def test_remove_tree_of_a_file_removes_just_the_file(world):
    parent, _, _ = world
    assert remove_tree(parent / "sibling.txt") == 1
    assert sorted(p.name for p in parent.iterdir()) == ["outside", "root"]


def test_remove_tree_on_a_missing_root_is_a_no_op(tmp_path):
    assert remove_tree(tmp_path / "missing") == 0
    assert remove_tree(tmp_path / "missing" / "deeper") == 0
    assert tmp_path.exists()


@pytest.mark.parametrize("root", ["", "/", "//", ".", "..", "a/.", "a/..", "./", "../", b".", b"/",
                                  Path(""), Path("."), Path("a/..")])
def test_paths_naming_no_entry_of_their_own_are_refused(root):
    """Never called with remove_tree: a regression must not be able to empty '/' or the cwd."""
    with pytest.raises(ValueError, match="refuses"):
        removable_root(root)


@pytest.mark.parametrize("root", [".", "..", Path(""), "a/..", "a/.", "./"])
def test_remove_tree_refuses_dot_paths_and_empties_nothing(tmp_path, monkeypatch, root):
    """``Path("")`` is ``.``: an empty setting must not empty the working folder (here a
    sacrificial one under tmp_path, three levels down so that ``..`` stays inside too)."""
    cwd = tmp_path / "x" / "y" / "cwd"
    (cwd / "a" / "inner").mkdir(parents=True)
    (cwd / "keep.txt").write_text("keep")
    (tmp_path / "x" / "y" / "beside.txt").write_text("beside")
    monkeypatch.chdir(cwd)
    with pytest.raises(ValueError):
        remove_tree(root)
    assert (cwd / "keep.txt").read_text() == "keep" and (cwd / "a" / "inner").is_dir()
    assert (tmp_path / "x" / "y" / "beside.txt").read_text() == "beside"


def test_remove_tree_stops_when_a_folder_is_moved_outside_meanwhile(world, monkeypatch):
    """A folder moved out of root while it is emptied: the climb back notices, so the
    names still pending in root's listing are never looked up in the new parent."""
    parent, root, outside = world
    (root / "zz-last.txt").write_text("in root")
    (outside / "zz-last.txt").write_text("outside, same name")
    (outside / "self").mkdir()  # same names as entries pending in root
    real_enter = fstree._enter

    def enter_then_move(fd, name, identity):
        child = real_enter(fd, name, identity)
        if name == "a" and child is not None:
            os.rename(root / "a", outside / "a")
        return child

    monkeypatch.setattr(fstree, "_enter", enter_then_move)
    with pytest.raises(TreeChanged):
        remove_tree(root)
    assert (outside / "zz-last.txt").read_text() == "outside, same name"
    assert (outside / "self").is_dir() and (outside / "o.txt").read_text() == "outside"
    assert (outside / "sub" / "s.txt").read_text() == "outside-sub"
    assert (parent / "sibling.txt").read_text() == "sibling"


# -- deep trees, few descriptors -------------------------------------------------------
_DEEP_SCRIPT = textwrap.dedent("""
    import os, resource, sys
    from rostergate.fstree import remove_tree, walk

    root, depth = sys.argv[1], int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    sys.setrecursionlimit(200)  # nothing here may recurse per level
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as handle:
        handle.write("bottom")
    os.symlink("/", "to-slash", dir_fd=fd)  # followed, this would lead everywhere
    os.close(fd)
    entries = list(walk(root))
    print(len(entries), max(e.depth for e in entries), sum(e.is_file() for e in entries))
    print(remove_tree(root), os.path.lexists(root))
""")


def test_deep_tree_is_walked_and_removed_with_few_descriptors(tmp_path):
    root = tmp_path / "deep"
    try:
        result = subprocess.run([sys.executable, "-c", _DEEP_SCRIPT, str(root), str(DEEP)],
                                capture_output=True, text=True, timeout=120, env={**os.environ})
        assert result.returncode == 0, result.stderr[-3000:]
        walked, removed = result.stdout.splitlines()
        assert walked == f"{DEEP + 2} {DEEP + 1} 1"  # the folders, the file and the link at the bottom
        assert removed == f"{DEEP + 3} False"  # and the root itself
    finally:
        if os.path.lexists(root):
            remove_tree(_under(root, tmp_path))  # pytest's own clean-up would recurse
