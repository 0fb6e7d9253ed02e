from trimloop.evals.feedback import feedback_summary


def test_thumbs_ratings_and_labels_are_summarised_per_name():
    summary = feedback_summary([
        [{"name": "thumbs_up", "value": True, "source": "user"}, {"name": "rating", "value": 4}],
        [{"name": "thumbs_up", "value": False}, {"name": "rating", "value": 2}, {"name": "rating", "value": 5}],
        [{"name": "expected", "value": "billing", "source": "reviewer"}],
        None,
        [{"value": "no name"}, "garbage"],
    ])
    assert summary["thumbs_up"] == {"items": 2, "sources": {"user": 2}, "mean": 0.5, "n": 2}
    assert summary["rating"]["items"] == 2 and summary["rating"]["n"] == 3 and summary["rating"]["mean"] == 11 / 3
    assert summary["expected"]["values"] == {"billing": 1} and summary["expected"]["sources"] == {"reviewer": 1}


def test_no_feedback_gives_an_empty_summary():
    assert feedback_summary([[], None]) == {}
