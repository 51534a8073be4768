"""A pair's features depend on its query, its text and the index only, never on the other
candidates of the request: the served scores stay isolated (and cacheable) with a scoring head."""
import numpy as np

from shoprank.features.index import LexicalIndex
from shoprank.features.pairs import FEATURE_GROUPS, FEATURE_NAMES, pair_features

TITLES = ["DEWALT 20V MAX Cordless Drill Kit", "Milwaukee M18 1/2 in. Hammer Drill", "BEHR 1 gal. White Interior Paint",
          "Everbilt 3/4 in. Copper Elbow", "RYOBI 18V ONE+ Drill Driver", "Glacier Bay 30 in. Vanity"]


def test_features_of_a_pair_do_not_depend_on_the_other_candidates():
    index = LexicalIndex.fit(TITLES * 3, ["cordless drill", "white paint"])
    rng = np.random.default_rng(0)
    for query in ("20v cordless drill", "3/4 in copper", "dewalt", "vanity 30 in"):
        together = pair_features(index, query, TITLES)
        for i, title in enumerate(TITLES):
            alone = pair_features(index, query, [title])
            np.testing.assert_array_equal(alone[0], together[i])
        shuffled = rng.permutation(len(TITLES))
        np.testing.assert_array_equal(pair_features(index, query, [TITLES[j] for j in shuffled]), together[shuffled])


def test_every_feature_belongs_to_exactly_one_ablation_group():
    grouped = [name for names in FEATURE_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(FEATURE_NAMES) and len(grouped) == len(set(grouped))
