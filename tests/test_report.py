"""benchmarks/report.py: BENCHMARKS.md's generated tables match their JSON."""

import os

import pytest

from benchmarks import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmarks_md_holds_what_report_makes_of_the_json():
  with open(os.path.join(ROOT, "BENCHMARKS.md"), encoding="utf-8") as f:
    text = f.read()
  made = report.blocks()
  for name in made:
    assert f"<!-- report:{name} -->" in text, name
  assert report.update(text, made) == text, (
      "BENCHMARKS.md is out of date: python benchmarks/report.py --update")


def test_every_json_source_records_commit_machine_and_date():
  for path in report.SOURCES.values():
    meta = report.load(path)["meta"]
    assert set(meta) >= {"commit", "machine", "date"}, path


def test_update_fills_only_between_the_marks():
  text = ("before\n<!-- report:a -->\nold\n<!-- /report:a -->\nafter\n"
          "<!-- report:b -->\n<!-- /report:b -->\n")
  got = report.update(text, {"a": "new a\n", "b": "new b\n"})
  assert got == ("before\n<!-- report:a -->\nnew a\n<!-- /report:a -->\n"
                 "after\n<!-- report:b -->\nnew b\n<!-- /report:b -->\n")
  with pytest.raises(ValueError, match="No report named 'c'"):
    report.update("<!-- report:c -->\n<!-- /report:c -->", {"a": ""})


def test_tflite_rows_become_table_rows():
  row = {"model": "m", "sparsity": 0.9, "type": "int8", "bytes": 2048,
         "gzip_bytes": 1024, "dense_bytes": 10240, "size_ratio": 5.0,
         "gzip_ratio": 2.04, "sparse_encoding": False,
         "default_delegates": True, "accuracy": 0.81234,
         "keras_accuracy": 0.8}
  lat = {"model": "m", "threads": 2, "dense_ms": 1.0, "sparse_ms": 0.5,
         "sparse_over_dense": 0.5, "densify_ops": 3, "sparse_tensors": 3,
         "zeros_in_sparse_tensors": 0.9}
  table = report.tflite_tables({"sizes": [row], "latency": [lat]})
  assert ("| m | 0.9 | int8 | 2.0 KiB | 1.0 KiB | 10.0 KiB | 5.0 (2.0) | no "
          "| yes | 0.8123 | 0.8000 |") in table
  assert "| m | 2 | 1.000 | 0.500 | 0.500 | 3 | 3 (0.90) |" in table
  only_latency = report.tflite_tables({"sizes": [], "latency": [lat]})
  assert only_latency.startswith("| model | threads |")
