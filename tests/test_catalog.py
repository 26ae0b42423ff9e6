"""The catalog of claims: unique keys and ids, and every committed claim row placed in it."""
import json
import pathlib

from bn_experiments import catalog

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results"


def test_keys_and_ids_are_unique():
    keys = [c.key for c in catalog.CLAIMS]
    ids = [i for c in catalog.CLAIMS for i in c.ids]
    assert len(keys) == len(set(keys)) and len(ids) == len(set(ids))
    assert all(c.statement and c.source for c in catalog.CLAIMS)


def test_claim_for_maps_by_the_id_suffix():
    assert catalog.claim_for("fig1_seeds.bn_trains_faster").key == "trains_faster"
    assert catalog.claim_for("fig1.bn_trains_faster").key == "trains_faster"
    own = catalog.claim_for("my_exp.something_unlisted")
    assert own.key == "something_unlisted" and own not in catalog.CLAIMS


def test_every_committed_claim_row_has_a_catalog_entry():
    listed = {i for c in catalog.CLAIMS for i in c.ids}
    for path in RESULTS.glob("**/summary.json"):
        for row in json.loads(path.read_text())["claims"]:
            assert row["id"].split(".", 1)[1] in listed, (path.parent.name, row["id"])
