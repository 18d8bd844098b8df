"""The media store interface on its local folder: put (move), size, ranged open, URL, local copy, delete; and the
range arithmetic the API serves every store's files with. The S3 store runs the same checks in test_s3_store.py."""

from __future__ import annotations

import pytest

from pixgen.api.media import parse_range
from pixgen.errors import ConfigError
from pixgen.storage import check_name, open_media_store
from pixgen.storage.local import LocalMediaStore

DATA = bytes(range(256)) * 2000  # 512 000 bytes: more than one read chunk


def exercise(store, tmp_path) -> None:
    """What every MediaStore must do (shared with the S3 tests)."""
    source = tmp_path / "upload.mp4"
    source.write_bytes(DATA)
    store.put("job_a-1234.mp4", source, "video/mp4")
    assert not source.exists()  # moved or uploaded: the worker's copy is gone
    assert store.size("job_a-1234.mp4") == len(DATA) and store.size("job_b.mp4") is None
    assert b"".join(store.open("job_a-1234.mp4")) == DATA
    assert b"".join(store.open("job_a-1234.mp4", 100, 199)) == DATA[100:200]
    assert b"".join(store.open("job_a-1234.mp4", len(DATA) - 5)) == DATA[-5:]
    copy = store.local_copy("job_a-1234.mp4", tmp_path)
    assert copy.read_bytes() == DATA
    store.delete("job_a-1234.mp4")
    store.delete("job_a-1234.mp4")  # twice: nothing to do
    assert store.size("job_a-1234.mp4") is None
    with pytest.raises(FileNotFoundError):
        store.local_copy("job_a-1234.mp4", tmp_path)


def test_the_local_store_keeps_files_in_its_folder_and_serves_ranges(tmp_path):
    store = open_media_store("", local_root=tmp_path / "media")
    assert isinstance(store, LocalMediaStore) and store.url("x.mp4", ttl=60, content_type="video/mp4") is None
    exercise(store, tmp_path)


@pytest.mark.parametrize("name", ["../pixgen.db", "a/b.mp4", "", ".hidden", "x" * 300, "a..b"])
def test_names_that_could_leave_the_store_are_refused(name):
    with pytest.raises(ValueError):
        check_name(name)


def test_an_unknown_store_is_a_configuration_error_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError) as err:
        open_media_store("ftp://host/x", local_root=tmp_path)
    assert err.value.field == "media_store"


@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-50", (950, 999)),
    ("bytes=900-2000", (900, 999)), ("bytes=1000-", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
    ("bytes=5-2", "unsatisfiable"), ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=-", None),
])
def test_one_byte_range_is_served_and_anything_else_is_the_whole_file_or_416(header, expected):
    assert parse_range(header, 1000) == expected
