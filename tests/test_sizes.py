import pytest

from pixgen.core.sizes import grid_size, nearest_aspect_ratio, num_frames, output_size

# The table of CONTRACT.md, copied verbatim: the 32 output sizes.
CONTRACT_TABLE = """
16:9 | 640×360 | 960×540 | 1280×720 | 1920×1080
4:3 | 480×360 | 720×540 | 960×720 | 1440×1080
1:1 | 360×360 | 540×540 | 720×720 | 1080×1080
3:4 | 360×480 | 540×720 | 720×960 | 1080×1440
9:16 | 360×640 | 540×960 | 720×1280 | 1080×1920
2:3 | 360×540 | 540×810 | 720×1080 | 1080×1620
3:2 | 540×360 | 810×540 | 1080×720 | 1620×1080
21:9 | 840×360 | 1260×540 | 1680×720 | 2520×1080
"""
QUALITIES = ["360p", "540p", "720p", "1080p"]


def _contract_rows():
    for line in CONTRACT_TABLE.strip().splitlines():
        ratio, *cells = [c.strip() for c in line.split("|")]
        for quality, cell in zip(QUALITIES, cells, strict=True):
            w, h = cell.split("×")
            yield ratio, quality, (int(w), int(h))


@pytest.mark.parametrize("ratio,quality,expected", list(_contract_rows()))
def test_output_size_matches_contract_table(ratio, quality, expected):
    assert output_size(ratio, quality) == expected


def test_contract_table_has_32_sizes():
    assert len(list(_contract_rows())) == 32


@pytest.mark.parametrize("ratio,quality,_", list(_contract_rows()))
def test_grid_size_is_on_the_32_grid_and_near_the_output(ratio, quality, _):
    w, h = output_size(ratio, quality)
    gw, gh = grid_size(w, h)
    assert gw % 32 == 0 and gh % 32 == 0
    assert abs(gw - w) <= 16 and abs(gh - h) <= 16


@pytest.mark.parametrize("duration", range(1, 16))
def test_frame_count_is_24_per_second_plus_one_and_8k_plus_1(duration):
    n = num_frames(duration)
    assert n == duration * 24 + 1
    assert (n - 1) % 8 == 0


@pytest.mark.parametrize("size,expected", [((1920, 1080), "16:9"), ((1000, 1000), "1:1"), ((1080, 1920), "9:16"),
                                           ((2400, 1000), "21:9"), ((800, 600), "4:3"), ((600, 900), "2:3"),
                                           ((1300, 1000), "4:3"), ((1450, 1000), "3:2")])
def test_nearest_aspect_ratio_of_an_image(size, expected):
    assert nearest_aspect_ratio(*size) == expected


def test_unknown_ratio_or_quality_is_refused():
    with pytest.raises(ValueError):
        output_size("5:4", "720p")
    with pytest.raises(ValueError):
        output_size("16:9", "4k")
