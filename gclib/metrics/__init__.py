"""What gclib measures: cost (MACs, parameters) and quality (FID/KID with floors and intervals, distances to the
target), and the feature extractors quality is measured through.

- :mod:`.cost`: MACs as torchprofile counts them (the paper's counter), parameters.
- :mod:`.features`: the offline extractor (trained on the embedded data, no download) and Inception; the kinds of
  damage a metric must see.
- :mod:`.distribution`: FID and KID from stored features, their floor (two real samples) and bootstrap intervals.
- :mod:`.scoring`: running a generator over an evaluation split and scoring its outputs.
- :mod:`.segmentation`: the segmenter that reads a label map back out of G(A), and its mIoU.
- :mod:`.validation`: the damage ladder that checks the instrument itself.
"""
from .cost import count_macs, count_params, describe
from .distribution import FeatureSet, Score, bootstrap, extract, fid, frechet_distance, kid
from .features import (CONTENT, DAMAGE, KINDS, OfflineFeatures, damage, get_extractor, inception_extractor,
                       inception_weights_path, load_inception_state,
                       load_offline_extractor, offline_extractor_path, strength_at, train_offline_extractor)
from .scoring import (GeneratorScorer, generate, l1_to_target, mean_with_interval, paired_distances,
                      perceptual_distances, report_name, split_scorer, style_codes)
from .segmentation import Segmenter, load_segmenter, miou, segmentation_score, train_segmenter
from .validation import LEVELS, damage_ladder, ladder_verdict

__all__ = ["count_macs", "count_params", "describe", "FeatureSet", "Score", "bootstrap", "extract", "fid",
           "frechet_distance", "kid", "CONTENT", "DAMAGE", "KINDS", "OfflineFeatures", "damage", "get_extractor",
           "inception_extractor", "inception_weights_path", "load_inception_state", "load_offline_extractor", "offline_extractor_path", "strength_at",
           "train_offline_extractor", "GeneratorScorer", "generate", "perceptual_distances", "style_codes", "l1_to_target", "mean_with_interval",
           "paired_distances", "report_name", "split_scorer", "Segmenter", "load_segmenter", "miou", "segmentation_score", "train_segmenter", "LEVELS", "damage_ladder", "ladder_verdict"]
