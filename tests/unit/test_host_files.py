"""host_files on a real temporary directory: what it writes, in one run, only what differs; check
mode writes nothing (no temporary file either); validation runs on the new content before it
replaces the old, and a refusal leaves the old file as it was."""

import grp
import os
import pwd

from conftest import load_module

host_files = load_module("host_files")

OWNER = {"owner": pwd.getpwuid(os.getuid()).pw_name, "group": grp.getgrgid(os.getgid()).gr_name}


def specs(root, content="a = 1\n", mode="0644", target="unit.service"):
    return [
        dict(OWNER, path=str(root / "etc"), state="directory", mode="0755"),
        dict(OWNER, path=str(root / "etc" / "conf"), content=content, mode=mode),
        dict(OWNER, path=str(root / "etc" / "link"), state="link", src=str(root / target)),
    ]


def listing(root):
    """Every path under root with its kind, mode, inode and content: a write of any kind changes it."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if os.path.islink(path):
                out[path] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[path] = ("dir", oct(st.st_mode), st.st_ino)
            else:
                with open(path) as handle:
                    out[path] = ("file", oct(st.st_mode), st.st_ino, handle.read())
    return out


def test_creates_in_order_then_a_second_run_writes_nothing(run_module, tmp_path):
    done = run_module(host_files, {"files": specs(tmp_path)})
    assert not done.failed, done.msg
    assert done.changed is True
    assert done.result["changed_paths"] == [str(tmp_path / name) for name in ("etc", "etc/conf", "etc/link")]
    assert (tmp_path / "etc/conf").read_text() == "a = 1\n"
    assert oct((tmp_path / "etc/conf").stat().st_mode & 0o7777) == "0o644"
    assert oct((tmp_path / "etc").stat().st_mode & 0o7777) == "0o755"
    assert os.readlink(tmp_path / "etc/link") == str(tmp_path / "unit.service")
    before = listing(tmp_path)
    again = run_module(host_files, {"files": specs(tmp_path)})
    assert again.result == {"changed": False, "actions": [], "changed_paths": []}
    assert listing(tmp_path) == before
    assert again.commands.calls == []


def test_check_mode_writes_nothing_and_says_what_would_change(run_module, tmp_path):
    run_module(host_files, {"files": specs(tmp_path)})
    before = listing(tmp_path)
    done = run_module(host_files, {"files": specs(tmp_path, content="a = 2\n", mode="0600", target="other")},
                      check=True, diff=True)
    assert done.changed is True
    assert done.result["actions"] == [f"wrote {tmp_path}/etc/conf (content, mode)",
                                      f"linked {tmp_path}/etc/link -> {tmp_path}/other (target)"]
    assert listing(tmp_path) == before
    conf = done.result["diff"][0]
    assert conf["before_header"] == str(tmp_path / "etc/conf")
    assert conf["before"] == "# file mode 0644\na = 1\n" and conf["after"] == "# file mode 0600\na = 2\n"
    assert done.result["diff"][1]["after"] == f"-> {tmp_path}/other\n"


def test_a_new_content_replaces_the_file_by_a_rename(run_module, tmp_path):
    run_module(host_files, {"files": specs(tmp_path)})
    inode = (tmp_path / "etc/conf").stat().st_ino
    done = run_module(host_files, {"files": specs(tmp_path, content="a = 2\n")})
    assert done.result["changed_paths"] == [str(tmp_path / "etc/conf")]
    assert (tmp_path / "etc/conf").read_text() == "a = 2\n"
    assert (tmp_path / "etc/conf").stat().st_ino != inode
    assert sorted(os.listdir(tmp_path / "etc")) == ["conf", "link"]


def test_a_mode_alone_is_changed_in_place_of_a_rewrite(run_module, tmp_path):
    run_module(host_files, {"files": specs(tmp_path)})
    inode = (tmp_path / "etc/conf").stat().st_ino
    done = run_module(host_files, {"files": specs(tmp_path, mode="640")})
    assert done.result["actions"] == [f"wrote {tmp_path}/etc/conf (mode)"]
    assert oct((tmp_path / "etc/conf").stat().st_mode & 0o7777) == "0o640"
    assert (tmp_path / "etc/conf").stat().st_ino == inode


def test_validation_runs_on_the_temporary_file_and_a_refusal_keeps_the_old_one(run_module, tmp_path):
    run_module(host_files, {"files": specs(tmp_path)})
    before = listing(tmp_path)
    files = specs(tmp_path, content="broken\n")
    files[1]["validate"] = "nft -c -f %s"
    done = run_module(host_files, {"files": files}, commands=[(1, "", "/tmp/x:1:1-6: Error: syntax error")])
    assert done.failed
    assert done.msg == f"Cannot write {tmp_path}/etc/conf: /tmp/x:1:1-6: Error: syntax error"
    [(argv, _stdin)] = done.commands.calls
    assert argv[:3] == ["/usr/sbin/nft", "-c", "-f"]
    assert os.path.dirname(argv[3]) == str(tmp_path / "etc") and os.path.basename(argv[3]).startswith(".conf.")
    assert listing(tmp_path) == before
    assert done.result["changed_paths"] == []


def test_validation_that_passes_installs_the_content(run_module, tmp_path):
    files = specs(tmp_path)
    files[1]["validate"] = "nft -c -f %s"
    done = run_module(host_files, {"files": files}, commands=[(0, "", "")])
    assert not done.failed, done.msg
    assert (tmp_path / "etc/conf").read_text() == "a = 1\n" and len(done.commands.calls) == 1


def test_a_file_where_the_link_goes_is_replaced_by_the_link(run_module, tmp_path):
    (tmp_path / "etc").mkdir(mode=0o755)
    (tmp_path / "etc/link").write_text("stale\n")
    done = run_module(host_files, {"files": specs(tmp_path)})
    assert f"linked {tmp_path}/etc/link -> {tmp_path}/unit.service (was a file)" in done.result["actions"]
    assert os.readlink(tmp_path / "etc/link") == str(tmp_path / "unit.service")


def test_a_directory_where_a_file_goes_fails_and_is_left(run_module, tmp_path):
    (tmp_path / "etc/conf").mkdir(parents=True)
    (tmp_path / "etc").chmod(0o755)
    done = run_module(host_files, {"files": specs(tmp_path)})
    assert done.failed and done.msg == f"Cannot manage {tmp_path}/etc/conf: it is a directory, not a file"
    assert (tmp_path / "etc/conf").is_dir()


def test_what_a_state_needs_is_checked_before_anything_is_written(run_module, tmp_path):
    done = run_module(host_files, {"files": [dict(OWNER, path=str(tmp_path / "f"), mode="0644")]})
    assert done.failed and done.msg == f"Cannot manage {tmp_path}/f: state file needs content"
    done = run_module(host_files, {"files": [dict(OWNER, path=str(tmp_path / "f"), content="", mode="rw")]})
    assert done.failed and "mode 'rw' is not an octal string" in done.msg
    stranger = {"path": str(tmp_path / "f"), "content": "", "mode": "0644", "owner": "nosuchuser"}
    done = run_module(host_files, {"files": [stranger]})
    assert done.failed and done.msg == f"Cannot manage {tmp_path}/f: no user nosuchuser"
    assert os.listdir(tmp_path) == []


def test_a_directory_gets_its_missing_parents(run_module, tmp_path):
    deep = dict(OWNER, path=str(tmp_path / "a/b/c"), state="directory", mode="0700")
    done = run_module(host_files, {"files": [deep]})
    assert done.result["changed_paths"] == [str(tmp_path / "a/b/c")]
    assert oct((tmp_path / "a/b/c").stat().st_mode & 0o7777) == "0o700" and (tmp_path / "a/b").is_dir()


def test_a_directory_another_host_made_after_the_read_is_no_failure(run_module, tmp_path, monkeypatch):
    # Hosts that share a directory (the kernel lab's /etc/systemd) may both find it missing.
    (tmp_path / "shared").mkdir(mode=0o700)
    real = host_files.read
    monkeypatch.setattr(host_files, "read", lambda path: {"state": "absent"} if path.endswith("shared") else real(path))
    done = run_module(host_files, {"files": [dict(OWNER, path=str(tmp_path / "shared"), state="directory",
                                                  mode="0755")]})
    assert not done.failed, done.msg
    assert oct((tmp_path / "shared").stat().st_mode & 0o7777) == "0o755"
