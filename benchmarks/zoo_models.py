"""The models of benchmarks/zoo.py: small test models, torchvision and Hugging Face architectures.

The first group follows the shapes of torchinfo's test fixture models (tests/fixtures/models.py
of torchinfo, MIT License, Copyright (c) 2020 Tyler Yep): rewritten here, kept to what a forward
needs. Each entry builds its model and its example input on demand, so a filter builds only
the models it runs; torchvision and transformers are imported only by the entries that need them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


@dataclass(frozen=True)
class Entry:
    """One zoo model: its name, its group, how to build it and its example input."""

    name: str
    group: str
    build: Callable[[], nn.Module]
    args: Callable[[], tuple[Any, ...]]
    kwargs: Callable[[], dict[str, Any]] = field(default=lambda: {})


# -- torchinfo's test models (rewritten) ---------------------------------------------------------


class IdentityNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.identity = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.identity(x)


def linear_stack() -> nn.Module:
    return nn.Sequential(
        nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1)
    )


class SmallCnn(nn.Module):
    """The MNIST-sized CNN: two convolutions, a flatten, two linear layers."""

    def __init__(self, jit: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.drop = nn.Dropout2d(0.3)
        fc1, fc2 = nn.Linear(320, 50), nn.Linear(50, 10)
        self.fc1: nn.Module = torch.jit.script(fc1) if jit else fc1
        self.fc2: nn.Module = torch.jit.script(fc2) if jit else fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.view(-1, 320)))
        return F.log_softmax(self.fc2(x), dim=1)


class TwoDtypeInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a1, self.a2 = nn.Linear(300, 50), nn.Linear(50, 10)
        self.b1, self.b2 = nn.Linear(300, 50), nn.Linear(50, 10)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.a2(F.relu(self.a1(x)))
        y = self.b2(F.relu(self.b1(y.float())))
        return F.log_softmax(torch.cat((x, y), 0), dim=1)


class ScalarArgNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv2 = nn.Conv2d(64, 32, 3, 1, 1)

    def forward(self, x: torch.Tensor, scalar: float) -> torch.Tensor:
        return self.conv1(x) if scalar == 5 else self.conv2(x)


class LstmNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 300)
        self.encoder = nn.LSTM(300, 512, num_layers=2)
        self.decoder = nn.Linear(512, 20)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        out, hidden = self.encoder(self.embedding(x))
        out = self.decoder(out)
        return out.view(-1, out.size(2)), hidden


class RecursiveConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(64, 64, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(6):
            x = self.conv1(x)
        return x


class ReturnsParameter(nn.Module):
    def __init__(self, pruned_names: bool = False) -> None:
        super().__init__()
        weight = nn.Parameter(torch.ones(50, 16))
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight_orig = weight
        if pruned_names:
            self.weight_mask = nn.Parameter(torch.zeros(50, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight_orig


class ParamList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.ParameterList(
            nn.Parameter(w) for w in torch.randn(100, 300).split([100, 200], dim=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Siamese(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(1, 64, 10), nn.Conv2d(64, 128, 7), nn.Conv2d(128, 128, 4)]
        )
        self.conv4 = nn.Conv2d(128, 256, 4)
        self.pooling = nn.MaxPool2d(2, 2)
        self.fc1, self.fc2 = nn.Linear(256, 4096), nn.Linear(4096, 1)
        self.dropout = nn.Dropout(0.5)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        for conv in [*self.convs, self.conv4]:
            x = self.pooling(F.relu(conv(x)))
        return self.fc1(x.view(x.size(0), -1))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        distance = torch.abs(self._branch(x1) - self._branch(x2))
        return torch.sigmoid(self.fc2(self.dropout(distance)))


class FunctionalCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 5), nn.Conv2d(32, 64, 5)
        self.drop = nn.Dropout2d(0.4)
        self.fc1, self.fc2 = nn.Linear(1024, 1024), nn.Linear(1024, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = self.drop(F.relu(self.fc1(x.view(-1, 1024))))
        return F.log_softmax(self.fc2(x), dim=1)


class DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = SmallCnn()

    def forward(self, x: torch.Tensor, unused: Any = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x = out["conv1"] = self.inner.conv1(x)
        x = self.inner.conv2(F.relu(F.max_pool2d(x, 2)))
        out["conv2"] = x
        x = out["fc1"] = F.relu(self.inner.fc1(F.relu(F.max_pool2d(x, 2)).view(-1, 320)))
        out["output"] = F.log_softmax(self.inner.fc2(x), dim=1)
        return out


class DictInput(nn.Module):
    def forward(self, x: dict[int, torch.Tensor], scale: int) -> torch.Tensor:
        return scale * (x[256] + x[512][0]) * 5


class ChosenLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.choices = nn.ModuleDict({"conv": nn.Conv2d(10, 10, 3), "pool": nn.MaxPool2d(3)})
        self.activations = nn.ModuleDict({"lrelu": nn.LeakyReLU(), "prelu": nn.PReLU()})

    def forward(self, x: torch.Tensor, layer: str, activation: str) -> torch.Tensor:
        return self.activations[activation](self.choices[layer](x))


class Holder:
    def __init__(self, tensors: Any) -> None:
        self.tensors = tensors


class NestedOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(10, 10), nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        x = F.softmax(self.lin2(self.lin1(x)), dim=0)
        return {"foo": ({"bar": [Holder(x)]},)}


class PackedLstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(60, 128)
        self.lstm = nn.LSTM(128, 32)
        self.out = nn.Linear(32, 18)
        self.drop = nn.Dropout(0.2)

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = torch.ones(1, batch.size(-1), 32)
        packed = pack_padded_sequence(self.embedding(batch), lengths)
        _, (ht, _) = self.lstm(packed, (h, h.clone()))
        return F.log_softmax(self.out(self.drop(ht[-1])), dim=1)


class Container(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(5, 5), ContainerChild(), nn.Linear(5, 5)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ContainerChild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(5, 5), nn.Linear(5, 5))
        self.between = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.between(self.seq(x))
        for layer in self.seq:
            out = layer(out)
        out = self.seq(x)
        for layer in self.seq:
            out = layer(out)
        return out


class PoolUnpool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decode = nn.Sequential(nn.Conv2d(16, 3, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        size = x.size()
        x, indices = self.pool(x)
        return self.decode(self.unpool(x, indices=indices, output_size=size))


class HalfTrainableParams(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(10))
        self.b = nn.Parameter(torch.zeros(10), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x + self.b


def mixed_trainable() -> nn.Module:
    convs = [nn.Conv1d(1, 1, 1) for _ in range(3)]
    convs[1].bias.requires_grad_(False)  # type: ignore[union-attr]
    for p in convs[2].parameters():
        p.requires_grad_(False)
    return nn.Sequential(*convs, nn.Dropout())


def reused_linear() -> nn.Module:
    linear = nn.Linear(10, 10)
    return nn.Sequential(*[m for _ in range(4) for m in (linear, nn.ReLU(True))])


def reused_relu() -> nn.Module:
    act = nn.ReLU(True)
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(4, 1, 1), nn.BatchNorm2d(1), act]
    for i in range(3):
        c = 2**i
        layers += [nn.Conv2d(c, 2 * c, 1, stride=2, padding=1), nn.BatchNorm2d(2 * c), act]
    return nn.Sequential(*layers)


class WeightedBlocks(nn.Sequential):
    weights: torch.Tensor

    def __init__(self, *blocks: nn.Module) -> None:
        super().__init__(*blocks)
        self.register_parameter("weights", nn.Parameter(torch.zeros(len(blocks))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, block in enumerate(self):
            x = x + self.weights[k] * block(x)
        return x


class ParameterMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(128, 64))
        self.b = nn.Parameter(torch.randn(64))
        self.fc2 = nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.mm(x, self.a) + self.b)


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l_1 = nn.Linear(1, 1)
        self.param_1 = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l_1(x) * self.param_1


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l_0 = nn.Linear(2, 1)
        self.param_0 = nn.Parameter(torch.ones(2))
        self.inside = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inside(self.l_0(x)) * self.param_0


class DilatedBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(3, 8, 5, padding="same"), nn.BatchNorm2d(8)
        self.block0 = nn.ModuleDict()
        self.block1 = nn.ModuleDict()
        for i in range(1, 7):
            block = self.block0 if i < 4 else self.block1
            dilation = 2**i if i < 4 else 2 ** (7 - i)
            block[f"conv{i}"] = nn.Conv2d(8, 8, 3, padding="same", dilation=dilation)
            block[f"bn{i}"] = nn.BatchNorm2d(8)
        self.conv7, self.bn7 = nn.Conv2d(8, 1, 1), nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.conv0(x)))
        for i in range(1, 7):
            block = self.block0 if i < 4 else self.block1
            x = torch.relu(block[f"bn{i}"](block[f"conv{i}"](x)))
        return torch.relu(self.bn7(self.conv7(x)))


def conv_list(relu_first: bool) -> nn.Module:
    def layer() -> nn.Module:
        parts = [nn.Conv1d(1, 1, 1), nn.ReLU(), nn.MaxPool1d(1)]
        return nn.Sequential(*(parts[1:2] + parts[:1] + parts[2:] if relu_first else parts))

    return nn.Sequential(*[layer() for _ in range(5)])


class CellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTMCell(3, 2)
        self.activation = nn.Tanh()
        self.projection = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hx, cx = torch.zeros(x.size(0), 2), torch.zeros(x.size(0), 2)
        for _ in range(4):
            hx, cx = self.lstm(x, (hx, cx))
            hx = self.activation(hx)
        return self.activation(self.projection(hx))


class TensorKernelConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1)
        self.kernel_size = torch.tensor(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _r(*shape: int) -> Callable[[], tuple[Any, ...]]:
    return lambda: (torch.randn(*shape),)


def _fixtures() -> list[Entry]:
    g = "torchinfo"
    ids = lambda *shape: lambda: (torch.randint(0, 20, shape),)  # noqa: E731
    return [
        Entry("identity", g, IdentityNet, _r(2, 10)),
        Entry("linear_stack", g, linear_stack, _r(16, 128)),
        Entry("single_input_cnn", g, SmallCnn, _r(16, 1, 28, 28)),
        Entry("partial_jit_cnn", g, lambda: SmallCnn(jit=True), _r(16, 1, 28, 28)),
        Entry(
            "two_dtype_inputs",
            g,
            TwoDtypeInputs,
            lambda: (torch.randn(1, 300), torch.randint(0, 9, (1, 300))),
        ),
        Entry("scalar_arg", g, ScalarArgNet, lambda: (torch.randn(1, 64, 28, 28), 5)),
        Entry("lstm", g, LstmNet, ids(100, 1)),
        Entry("recursive_conv", g, RecursiveConv, _r(1, 64, 28, 28)),
        Entry("returns_parameter", g, ReturnsParameter, _r(1, 16)),
        Entry("pruned_names", g, lambda: ReturnsParameter(True), _r(1, 16)),
        Entry("parameter_list", g, ParamList, _r(100, 100)),
        Entry(
            "siamese", g, Siamese, lambda: (torch.randn(1, 1, 88, 88), torch.randn(1, 1, 88, 88))
        ),
        Entry("functional_cnn", g, FunctionalCnn, _r(1, 1, 28, 28)),
        Entry("dict_output", g, DictOutput, _r(1, 1, 28, 28)),
        Entry(
            "dict_input",
            g,
            DictInput,
            lambda: ({256: torch.randn(10, 1), 512: [torch.randn(1)]}, 2),
        ),
        Entry(
            "module_dict",
            g,
            ChosenLayers,
            _r(1, 10, 3, 3),
            lambda: {"layer": "conv", "activation": "prelu"},
        ),
        Entry("nested_output", g, NestedOutput, _r(1, 10)),
        Entry(
            "packed_lstm",
            g,
            PackedLstm,
            lambda: (torch.randint(0, 60, (6, 5)), torch.tensor([6, 5, 4, 3, 2])),
        ),
        Entry("container", g, Container, _r(1, 5)),
        Entry("pool_unpool", g, PoolUnpool, _r(1, 3, 64, 64)),
        Entry("half_trainable", g, HalfTrainableParams, _r(10)),
        Entry("mixed_trainable", g, mixed_trainable, _r(1, 1, 1)),
        Entry("reused_linear", g, reused_linear, _r(2, 10)),
        Entry("reused_relu", g, reused_relu, _r(4, 4, 64, 64)),
        Entry(
            "weighted_blocks",
            g,
            lambda: WeightedBlocks(*(nn.Linear(64, 64) for _ in range(4))),
            _r(8, 64),
        ),
        Entry("parameter_mlp", g, ParameterMlp, _r(16, 128)),
        Entry("inside_params", g, Outer, _r(100, 2)),
        Entry("dilated_blocks", g, DilatedBlocks, _r(2, 3, 32, 32)),
        Entry("conv_list_a", g, lambda: conv_list(False), _r(1, 1, 10)),
        Entry("conv_list_b", g, lambda: conv_list(True), _r(1, 1, 10)),
        Entry("lstm_cell_loop", g, CellLoop, _r(8, 3)),
        Entry("tensor_kernel_conv", g, TensorKernelConv, _r(1, 1, 16)),
        Entry("gru", g, lambda: nn.GRU(32, 64, num_layers=2, batch_first=True), _r(4, 20, 32)),
        Entry(
            "transformer_encoder",
            g,
            lambda: nn.TransformerEncoder(
                nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), num_layers=3
            ),
            _r(2, 16, 64),
        ),
        Entry(
            "transformer",
            g,
            lambda: nn.Transformer(64, 4, 2, 2, 128, batch_first=True),
            lambda: (torch.randn(2, 12, 64), torch.randn(2, 10, 64)),
        ),
        Entry(
            "mlp_1000_calls",
            g,
            lambda: nn.Sequential(*(m for _ in range(500) for m in (nn.Linear(64, 64), nn.ReLU()))),
            _r(32, 64),
        ),
    ]


# -- torchvision ---------------------------------------------------------------------------------


def import_torchvision() -> Any:
    """Import torchvision under a CPU torch whose wheel of torchvision lacks its compiled ops.

    torchvision registers fake kernels for ``torchvision::nms`` and ``qnms`` at import; without
    its C++ library those operators do not exist and the import fails. Defining their schemas
    first lets it import; the zoo's architectures call neither.
    """
    import importlib

    try:
        return importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        with contextlib.suppress(RuntimeError):  # already defined
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import sys

    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    _KEEP.append(lib)
    return importlib.import_module("torchvision")


_KEEP: list[Any] = []  # the schema library must outlive the import


def _vision(name: str, size: int = 224, **options: Any) -> Entry:
    def build() -> nn.Module:
        return import_torchvision().models.get_model(name, weights=None, **options)

    return Entry(name, "torchvision", build, _r(1, 3, size, size))


def _torchvision() -> list[Entry]:
    return [
        _vision("alexnet"),
        _vision("vgg11"),
        _vision("resnet18"),
        _vision("resnet50"),
        _vision("wide_resnet50_2"),
        _vision("resnext50_32x4d"),
        _vision("googlenet", aux_logits=False, init_weights=False),
        _vision("inception_v3", size=299, aux_logits=False, init_weights=False),
        _vision("densenet121"),
        _vision("squeezenet1_0"),
        _vision("shufflenet_v2_x0_5"),
        _vision("mobilenet_v2"),
        _vision("mobilenet_v3_small"),
        _vision("mobilenet_v3_large"),
        _vision("mnasnet0_5"),
        _vision("efficientnet_b0"),
        _vision("regnet_y_400mf"),
        _vision("convnext_tiny"),
        _vision("vit_b_16"),
        _vision("swin_t"),
        _vision("maxvit_t"),
    ]


# -- Hugging Face (tiny configs, built from the config: nothing is downloaded) ------------------


def _hf(name: str, config: str, model: str, *, seq2seq: bool = False, **fields: Any) -> Entry:
    def build() -> nn.Module:
        with contextlib.suppress(ImportError):
            import_torchvision()  # transformers imports it when it is installed
        import transformers

        cfg = getattr(transformers, config)(**fields)
        return getattr(transformers, model)(cfg)

    def args() -> tuple[Any, ...]:
        return (torch.randint(0, 99, (2, 16)),)

    def kwargs() -> dict[str, Any]:
        return {"decoder_input_ids": torch.randint(0, 99, (2, 8))} if seq2seq else {}

    return Entry(name, "transformers", build, args, kwargs)


_TINY = {"vocab_size": 100, "num_attention_heads": 4}


def _transformers() -> list[Entry]:
    small: dict[str, Any] = {
        **_TINY,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
    }
    return [
        _hf("bert_tiny", "BertConfig", "BertModel", **small),
        _hf("roberta_tiny", "RobertaConfig", "RobertaModel", **small),
        _hf(
            "distilbert_tiny",
            "DistilBertConfig",
            "DistilBertModel",
            vocab_size=100,
            dim=64,
            hidden_dim=128,
            n_layers=2,
            n_heads=4,
        ),
        _hf(
            "gpt2_tiny",
            "GPT2Config",
            "GPT2Model",
            vocab_size=100,
            n_embd=64,
            n_layer=2,
            n_head=4,
            bos_token_id=0,
            eos_token_id=0,
        ),
        _hf("llama_tiny", "LlamaConfig", "LlamaModel", **small, num_key_value_heads=2),
        _hf(
            "t5_tiny",
            "T5Config",
            "T5Model",
            seq2seq=True,
            vocab_size=100,
            d_model=64,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
        ),
        _hf(
            "bart_tiny",
            "BartConfig",
            "BartModel",
            seq2seq=True,
            vocab_size=100,
            d_model=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
        ),
        _hf("bert_base_layers", "BertConfig", "BertModel", vocab_size=1000),
    ]


def zoo() -> list[Entry]:
    """Every model of the zoo, small test models first."""
    return _fixtures() + _torchvision() + _transformers()
