"""tools/marco_mp100_rows.py counts the rows MARCO's MP-100 loader pairs across keypoint types (the figures the
docs quote for mp100-animal-body-marco), on files in the release's layout."""

from __future__ import annotations

import json

from repo_tools import load_tool


def _ann(ann_id, image_id, visibility):
    keypoints = [v for i, vis in enumerate(visibility) for v in (10.0 + i, 20.0, vis)]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "keypoints": keypoints,
            "num_keypoints": sum(v > 0 for v in visibility)}


def test_counts_rows_of_other_types_and_multi_annotation_images(tmp_path, capsys):
    annotations, lists = tmp_path / "annotations", tmp_path / "pairs"
    annotations.mkdir()
    lists.mkdir()
    images = [{"id": i, "file_name": f"cat/{i}.jpg", "width": 100, "height": 100} for i in (1, 2, 3, 4)]
    anns = [
        _ann(11, 1, [2, 2, 2]),
        _ann(12, 2, [2, 2, 2]),          # same pattern as image 1: rows line up
        _ann(13, 3, [0, 2, 2]),          # keypoint 0 hidden: rows 0 and 1 pair types 0-1 and 1-2
        _ann(14, 4, [2, 0, 0]),
        _ann(15, 4, [2, 2, 0]),          # a second animal on image 4
        {"id": 16, "image_id": 4, "category_id": 1, "keypoints": [0.0] * 9, "num_keypoints": 0},  # ignored
    ]
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat", "keypoints": []}]}
    (annotations / "mp100_split1_test.json").write_text(json.dumps(coco))
    (annotations / "mp100_split1_train.json").write_text(json.dumps({"images": [], "annotations": []}))
    pairs = [{"src_file": "cat/1.jpg", "trg_file": "cat/2.jpg"},   # 3 rows, none wrong
             {"src_file": "cat/1.jpg", "trg_file": "cat/3.jpg"},   # 2 rows, both wrong
             {"src_file": "cat/4.jpg", "trg_file": "cat/1.jpg"}]   # types (0, 0, 1) vs (0, 1, 2): 2 wrong of 3
    (lists / "pairs_animal_body_unseen.json").write_text(json.dumps(pairs))

    table = load_tool("marco_mp100_rows.py").main([str(annotations), str(lists)])

    assert table == {"pairs_animal_body_unseen.json": {
        "pairs": 3, "pairs_mismatched": 2, "rows": 8, "rows_mismatched": 4, "pairs_multi": 1}}
    assert "pairs_animal_body_unseen.json" in capsys.readouterr().out
