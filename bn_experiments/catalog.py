"""The claims the suite tests, in the order the ledger lists them.

First the claims of Ioffe & Szegedy (2015) about why and how BN works, in the order of the
project's claims list (internal covariate shift first, the Jacobian conjecture last), then the
papers' other sections: the MNIST and ImageNet experiments of Ioffe & Szegedy, Santurkar et al.
(2018) and Yang et al. (2019). Each entry names the claim-row ids (the part after the experiment
name: `fig1.bn_trains_faster` -> `bn_trains_faster`) of every experiment that bears on it,
so the ledger shows each claim once with all its evidence beneath it. A claim with no experiment
yet is listed as not yet tested; a claim row whose id no entry names gets an entry of its own.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    source: str
    ids: tuple[str, ...] = ()


CLAIMS: tuple[Claim, ...] = (
    Claim("internal_covariate_shift",
          "Internal covariate shift (each layer's input distribution changing as the layers below "
          "train) slows training; BN reduces it",
          "IS Sec. 1-2, Fig. 1(b,c); disputed by ST Sec. 2",
          ("bn_reduces_ics_input_induced", "bn_reduces_internal_covariate_shift",
           "bn_stabilizes_sigmoid_input")),
    Claim("saturating_nonlinearities",
          "BN makes networks with saturating nonlinearities trainable, keeping their inputs out of "
          "the saturated regime",
          "IS Sec. 1, Sec. 4.2.2",
          ("deep_sigmoid_trains_with_bn", "saturating_nonlinearities_train_with_bn",
           "bn_reduces_saturation")),
    Claim("higher_learning_rates", "BN allows much higher learning rates",
          "IS abstract, Sec. 3.3, Sec. 4.2.2", ("bn_allows_higher_lr",)),
    Claim("less_careful_init", "With BN one can be less careful about initialization",
          "IS abstract, Sec. 3.3", ("bn_less_careful_init",)),
    Claim("gradient_quality_batch_size",
          "The mini-batch gradient estimates the training-set gradient better as the batch grows",
          "IS Sec. 1", ("minibatch_gradient_error_inverse_sqrt_batch",
                        "bn_minibatch_gradient_error_inverse_sqrt_batch")),
    Claim("bn_noise_regularizes",
          "An example's BN output depends on its mini-batch; that noise regularizes",
          "IS Sec. 3.4, 4.2.1", ("noise_shrinks_with_batch", "bn_narrows_generalization_gap",
                                 "smaller_statistics_batches_generalize_better",
                                 "bn_makes_dropout_unnecessary")),
    Claim("gradient_scale_independence",
          "BN makes the gradients independent of the parameters' scale: BN(Wu) = BN((aW)u), and "
          "the gradient with respect to aW is 1/a times that with respect to W",
          "IS Sec. 3.3", ("bn_output_scale_invariant", "bn_gradient_scales_inversely")),
    Claim("whitened_inputs_converge_faster",
          "Training converges faster when the inputs are whitened", "IS Sec. 2 (LeCun et al.)",
          ("whitened_inputs_converge_faster", "bn_reduces_the_benefit_of_whitening")),
    Claim("gamma_beta_restore_identity",
          "The learned scale and shift can restore the un-normalized layer", "IS Sec. 3",
          ("gamma_beta_restore_identity", "trained_bn_stays_away_from_identity",
           "gamma_beta_add_representation_power")),
    Claim("small_changes_not_amplified",
          "Normalization keeps small parameter changes from amplifying into large changes of "
          "activations and gradients", "IS Sec. 3.3",
          ("activation_changes_not_amplified", "gradient_changes_not_amplified")),
    Claim("large_lr_no_explosion",
          "Without BN, large learning rates grow the parameters until the model explodes; with BN "
          "training is independent of the parameters' scale",
          "IS Sec. 3.3", ("bn_prevents_divergence", "bn_stabilizes_weight_growth",
                          "bn_output_independent_of_weight_scale_at_init",
                          "bn_training_resilient_to_weight_scale")),
    Claim("normalization_inside_gradient",
          "Normalization must take part in the gradient step: outside it, the bias and scale grow "
          "without bound while the loss stays flat", "IS Sec. 2",
          ("statistics_in_backprop", "parameters_grow_outside_gradient")),
    Claim("full_whitening_expensive",
          "Full whitening inside the gradient step is expensive, hence per-feature "
          "standardization", "IS Sec. 2-3; Huang et al. 2018",
          ("full_whitening_is_expensive", "joint_covariance_needs_large_batches",
           "standardization_trains_as_well_as_whitening")),
    Claim("wu_more_gaussian",
          "Wu + b is more Gaussian than the layer input u, so it is the better place to normalize",
          "IS Sec. 3.2", ("wu_more_symmetric", "wu_closer_to_gaussian_tails", "wu_less_sparse",
                          "bn_before_nonlinearity_trains_faster",
                          "bn_before_nonlinearity_more_accurate")),
    Claim("jacobian_singular_values",
          "With BN the layer Jacobians have singular values close to 1 (a conjecture)",
          "IS Sec. 3.3; Yang et al. 2019", ("bn_jacobian_singular_values_near_one",)),
    Claim("trains_faster", "BN reaches a given test accuracy in far fewer steps",
          "IS Sec. 4.1, Fig. 1(a); Sec. 4.2.2", ("bn_trains_faster", "faster_at_best_lr")),
    Claim("higher_accuracy", "BN reaches a higher test accuracy",
          "IS Sec. 4.1, Fig. 1(a); Sec. 4.2.2", ("bn_higher_accuracy", "higher_accuracy_at_best_lr",
                                                 "bn_baseline_higher_accuracy",
                                                 "bn_x5_higher_accuracy", "bn_x30_higher_accuracy")),
    Claim("population_statistics",
          "Inference with population statistics (Algorithm 2) matches training-mode accuracy",
          "IS Sec. 3.1, Algorithm 2", ("population_statistics_match_batch_statistics",
                                       "moving_averages_match_population_statistics")),
    Claim("per_replica_statistics",
          "Data-parallel training can normalize with each replica's own statistics (the paper's "
          "distributed Inception training) without losing training speed",
          "IS Sec. 4.2", ("per_device_statistics_train_as_fast",)),
    Claim("inception_variants",
          "On Inception, BN with the Sec. 4.2.1 changes (at 5x and 30x the learning rate) reaches "
          "the plain network's best accuracy in far fewer steps (the paper: 14x)",
          "IS Sec. 4.2, Fig. 2-3",
          ("bn_x5_reaches_inception_best_sooner", "bn_x30_reaches_inception_best_sooner",
           "bn_baseline_reaches_inception_best_sooner", "bn_x5_faster_than_bn_baseline",
           "bn_x30_higher_accuracy_than_bn_x5")),
    Claim("noisy_bn_trains", "Noisy BN trains as well as BN despite a less stable input "
          "distribution", "ST Sec. 2.1",
          ("noisy_bn_trains_as_well_as_bn", "noisy_bn_larger_distributional_ics")),
    Claim("gradient_ics", "BN does not reduce (and may increase) the gradient-based internal "
          "covariate shift", "ST Sec. 2.2", ("bn_reduces_ics_gradient",)),
    Claim("smoother_landscape", "BN makes the loss landscape smoother (loss range, gradient "
          "predictiveness, effective beta-smoothness)", "ST Sec. 3",
          ("smaller_loss_range", "more_predictive_gradients", "smaller_effective_beta")),
    Claim("lp_normalization", "lp normalizations train as well as BN while their distributions "
          "shift more", "ST Sec. 3.3",
          ("lp_normalizations_train_as_well_as_bn", "lp_normalizations_not_more_stable",
           "lp_normalizations_beat_no_normalization")),
    Claim("gradient_explosion_at_init", "At initialization, deep BN networks without skip "
          "connections have gradients that explode with depth", "Yang et al. 2019",
          ("bn_gradient_explodes_at_init", "bn_gradient_growth_rate_pi_over_pi_minus_1")),
)


def claim_for(row_id: str) -> Claim:
    """The catalog claim a claim row (`<experiment>.<id>`) bears on; its own entry if none."""
    suffix = row_id.split(".", 1)[-1]
    for claim in CLAIMS:
        if suffix in claim.ids:
            return claim
    return Claim(suffix, "", "")
