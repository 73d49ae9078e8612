"""benchmark/misses.py: finding ball and paddle in a frame, and a conceded point's gap, on frames made by hand."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmark"))
import misses  # noqa: E402


def court(ball=None, paddle_top=None) -> np.ndarray:
    """A 210x160 grayscale screen: the court's colour 87, the agent's paddle (16 high) and a 2x4 ball lit."""
    screen = np.full((210, 160), 87, np.uint8)
    if paddle_top is not None:
        screen[paddle_top:paddle_top + 16, 140:144] = 147
    if ball is not None:
        screen[ball[0]:ball[0] + 4, ball[1]:ball[1] + 2] = 236
    return screen


def test_locate_finds_ball_and_paddle_in_screen_pixels_in_every_frame_format():
    screen = court(ball=(100, 60), paddle_top=120)
    assert misses.locate(screen) == ((101.5, 60.5), (120.0, 136.0))
    rgb = np.stack([np.where(screen == 87, 144, 200)] * 3, -1).astype(np.uint8)
    assert misses.locate(rgb) == ((101.5, 60.5), (120.0, 136.0))
    import cv2

    small = cv2.resize(screen, (84, 84), interpolation=cv2.INTER_AREA)  # as ale-py makes the DeepMind frame
    (row, col), (top, bottom) = misses.locate(small)
    assert abs(row - 101.5) <= 3 and abs(col - 60.5) <= 3
    assert abs(top - 120) <= 3 and abs(bottom - 136) <= 3


def test_locate_sees_no_ball_on_an_empty_court():
    assert misses.locate(court(paddle_top=50)) == (None, (50.0, 66.0))


def test_crossing_row_goes_straight_on_and_reflects_off_the_walls():
    assert misses.crossing_row((100, 100), (104, 120)) == pytest.approx(108)
    # from row 40 moving up 10 rows per 10 columns: 20 rows on, it meets the top wall (34) after 6 and comes back 14
    assert misses.crossing_row((50, 110), (40, 120)) == pytest.approx(34 + 14)
    assert misses.crossing_row((180, 110), (190, 120)) == pytest.approx(194 - 16)


def test_gap_is_how_far_outside_the_paddle_the_line_crossed_and_how_the_paddle_moved():
    approach = [((100, 100), (150, 166)), ((104, 120), (148, 164))]  # crosses at 108, paddle 148-164 moving up
    assert misses.gap_of(approach) == (40, "towards")
    away = [((100, 100), (150, 166)), ((104, 120), (152, 168))]
    assert misses.gap_of(away) == (44, "away")
    met = [((100, 100), (100, 116)), ((104, 120), (100, 116))]
    assert misses.gap_of(met) == (0, "still")


def test_gap_is_unknown_without_two_sightings_of_the_ball_coming_on_the_agents_half():
    assert misses.gap_of([((100, 120), (100, 116))]) is None
    assert misses.gap_of([((100, 60), (100, 116)), ((104, 70), (100, 116))]) is None  # the opponent's half
    assert misses.gap_of([((100, 120), (100, 116)), ((104, 110), (100, 116))]) is None  # going away
    assert misses.gap_of([((100, 100), (100, 116)), (None, (100, 116)), ((104, 120), None)]) is None
