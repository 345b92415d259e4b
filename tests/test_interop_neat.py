"""Network.from_neat against neat-python's own FeedForwardNetwork on genomes evolved by neat itself."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import edgegrad
from edgegrad.interop.neatnet import NEAT_ACTIVATIONS, map_genome, map_population

neat = pytest.importorskip("neat", reason="neat-python not installed (pip install 'edgegrad[neat]')")

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "neat" / "xor.cfg"
#: evolve with every activation edgegrad maps, mutating responses and activations often
OVERRIDES = {
    "num_inputs": "3", "num_outputs": "2", "pop_size": "40",
    "activation_options": " ".join(NEAT_ACTIVATIONS), "activation_mutate_rate": "0.5",
    "response_init_stdev": "0.5", "response_mutate_rate": "0.5", "response_replace_rate": "0.1",
    "node_add_prob": "0.6", "conn_add_prob": "0.7", "enabled_mutate_rate": "0.1",
}


def _config(tmp_path: Path, **extra: str) -> neat.Config:
    lines = []
    for line in CONFIG.read_text().splitlines():
        key = line.split("=")[0].strip()
        values = {**OVERRIDES, **extra}
        lines.append(f"{key} = {values[key]}" if "=" in line and key in values else line)
    path = tmp_path / "neat.cfg"
    path.write_text("\n".join(lines) + "\n")
    return neat.Config(neat.DefaultGenome, neat.DefaultReproduction, neat.DefaultSpeciesSet,
                       neat.DefaultStagnation, str(path))


def _evolved(config: neat.Config, generations: int = 25, seed: int = 7) -> list:
    """Every genome of each generation of a real neat run (its own mutations and crossover)."""
    random.seed(seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(6, 3))
    seen: list = []

    def fitness(genomes: list, cfg: neat.Config) -> None:
        for _, g in genomes:
            net = neat.nn.FeedForwardNetwork.create(g, cfg)
            g.fitness = -float(sum(abs(v) for x in X for v in net.activate(x.tolist())))
            seen.append(_copy(g))

    neat.Population(config, seed=seed).run(fitness, generations)
    return seen


def _copy(genome: object) -> object:
    import copy
    return copy.deepcopy(genome)


@pytest.fixture(scope="module")
def evolved(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    config = _config(tmp_path_factory.mktemp("neat"))
    return config, _evolved(config)


def _neat_outputs(genome: object, config: neat.Config, X: np.ndarray) -> np.ndarray:
    net = neat.nn.FeedForwardNetwork.create(genome, config)
    return np.array([net.activate(x.tolist()) for x in X])


def test_outputs_equal_neat_feedforward_on_evolved_genomes(evolved: tuple) -> None:
    config, genomes = evolved
    X = np.random.default_rng(0).normal(size=(16, 3)) * 1.5
    activations, responses, hidden, disabled = set(), set(), 0, 0
    for genome in genomes:
        net = edgegrad.Network.from_neat(genome, config)
        np.testing.assert_allclose(edgegrad.gradients(net, X).outputs, _neat_outputs(genome, config, X),
                                   rtol=1e-9, atol=1e-12)
        activations.update(genome.nodes[k].activation for k in map_genome(genome, config).nodes)
        responses.update(round(genome.nodes[k].response, 6) for k in genome.nodes)
        hidden = max(hidden, sum(k >= 2 for k in genome.nodes))
        disabled = max(disabled, sum(not c.enabled for c in genome.connections.values()))
    # the run really exercised what the mapping has to get right
    assert activations == set(NEAT_ACTIVATIONS)
    assert len(responses) > 10 and hidden >= 3 and disabled >= 2


def test_genome_gradients_are_derivatives_of_neat_outputs_in_the_genome_weights(evolved: tuple) -> None:
    """Central differences through neat's own network, in the genome's weights and biases.

    (relu and abs kinks: no z of these seeded runs lies within a step of 0.)
    """
    config, genomes = evolved
    X = np.random.default_rng(1).normal(size=(4, 3))
    checked = 0
    for genome in genomes[-40:]:
        m = map_genome(genome, config)
        gw, gb = m.genome_gradients(edgegrad.gradients(m.net, X))   # B×K×E, B×K×N
        for grads, genes, keys, attr in ((gw, genome.connections, m.connections, "weight"),
                                         (gb, genome.nodes, m.nodes, "bias")):
            for i, key in enumerate(keys):
                numeric = _central_difference(genome, config, X, genes[key], attr)
                np.testing.assert_allclose(grads[:, :, i], numeric, rtol=1e-5, atol=1e-7)
        checked += 1
    assert checked == 40


def _central_difference(genome: object, config: neat.Config, X: np.ndarray, gene: object, attr: str,
                        h: float = 1e-6) -> np.ndarray:
    """d(neat's outputs)/d(gene.attr) by central differences (B×K); the gene is left as it was."""
    value = getattr(gene, attr)
    setattr(gene, attr, value + h)
    up = _neat_outputs(genome, config, X)
    setattr(gene, attr, value - h)
    down = _neat_outputs(genome, config, X)
    setattr(gene, attr, value)
    return (up - down) / (2 * h)


def test_network_and_write_back_follow_new_genome_weights(evolved: tuple) -> None:
    config, genomes = evolved
    genome = _copy(max(genomes, key=lambda g: len(g.connections)))
    m = map_genome(genome, config)
    rng = np.random.default_rng(2)
    w = m.genome_weights + rng.normal(size=m.genome_weights.size) * 0.1
    b = m.genome_biases + rng.normal(size=m.genome_biases.size) * 0.1
    m.write_back(genome, w, b)
    X = rng.normal(size=(5, 3))
    np.testing.assert_allclose(edgegrad.gradients(m.network(w, b), X).outputs,
                               _neat_outputs(genome, config, X), rtol=1e-9, atol=1e-12)
    assert m.network(w, b) == edgegrad.Network.from_neat(genome, config)


def test_ids_are_neat_keys_as_text(evolved: tuple) -> None:
    config, genomes = evolved
    net = edgegrad.Network.from_neat(genomes[-1], config)
    assert net.inputs == ("-1", "-2", "-3") and net.outputs == ("0", "1")
    assert net.node_ids[:2] == ("0", "1")
    assert all(int(v) in genomes[-1].nodes for v in net.node_ids)


def test_a_generation_maps_together_as_each_genome_maps_alone(evolved: tuple) -> None:
    config, genomes = evolved
    generation = genomes[-40:]
    alone = [map_genome(g, config) for g in generation]
    for given in (generation, list(enumerate(generation)), dict(enumerate(generation))):
        together = map_population(given, config)
        assert len(together) == len(alone)
        for a, b in zip(together, alone):
            assert a.net == b.net and a.connections == b.connections and a.nodes == b.nodes
            for field in ("weight_scale", "bias_scale", "genome_weights", "genome_biases"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert map_population([], config) == []


def test_a_generation_with_an_unmappable_genome_names_it(evolved: tuple) -> None:
    config, genomes = evolved
    generation = [_copy(g) for g in genomes[-3:]]
    generation[2].nodes[0].activation = "cube"
    with pytest.raises(edgegrad.InvalidInput) as info:
        map_population(generation, config)
    assert str(info.value).startswith("genomes[2]: genome.nodes[0]: neat activation 'cube' is not supported")


@pytest.mark.parametrize("attr, value, message", [
    ("activation", "sin", "genome.nodes[0]: neat activation 'sin' is not supported (neat's sin is sin(clamp(5z"),
    ("activation", "lelu", "slope 0.005"),
    ("activation", "cube", "neat activation 'cube' is not supported (edgegrad has no activation"),
    ("aggregation", "product", "genome.nodes[0]: aggregation 'product' is not supported"),
])
def test_unmappable_nodes_are_refused_by_name(tmp_path: Path, attr: str, value: str, message: str) -> None:
    config = _config(tmp_path)
    genome = _evolved(config, generations=1)[0]
    setattr(genome.nodes[0], attr, value)
    with pytest.raises(edgegrad.InvalidInput) as info:
        edgegrad.Network.from_neat(genome, config)
    assert message in str(info.value)


def test_custom_function_under_a_builtin_name_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    genome = _evolved(config, generations=1)[0]
    genome.nodes[0].activation = "tanh"
    config.genome_config.add_activation("tanh", lambda z: z)
    with pytest.raises(edgegrad.InvalidInput, match="custom function registered under a built-in name"):
        edgegrad.Network.from_neat(genome, config)


@pytest.mark.service  # starts a process
def test_lamarckian_example_tunes_written_back_genomes_that_neat_evaluates_alike() -> None:
    import json
    import subprocess
    import sys

    script = CONFIG.with_name("lamarckian.py")
    run = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    # neat's own FeedForwardNetwork, run on the genomes after write_back, scores them as edgegrad scored the
    # tuned networks: the tuned weights are in the genomes
    assert report["largest_edgegrad_neat_difference"] < 1e-9
    # the same seeded first generation: tuned by 3 gradient steps it beats itself untuned
    assert len(report["lamarckian_curve"]) == 4
    assert report["lamarckian_curve"][0] > report["plain_curve"][0]
