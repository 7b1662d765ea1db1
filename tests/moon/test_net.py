"""MoonNet shapes: K logits by default, K+1 on request, features, K-way fc."""
import torch

from openood_moon.moon import MoonNet, export_state_dict
from openood_moon.networks import ResNet18_32x32, SmallCNN


def test_moonnet_shapes_on_small_cnn():
    net = MoonNet(SmallCNN(num_classes=6)).eval()
    x = torch.randn(3, 3, 28, 28)
    assert net(x).shape == (3, 6)
    assert net(x, return_unknown=True).shape == (3, 7)
    logits, feat = net(x, return_feature=True)
    assert logits.shape == (3, 6) and feat.shape == (3, 128)
    logits, feat = net(x, return_feature=True, return_unknown=True)
    assert logits.shape == (3, 7)
    _, feats = net(x, return_feature_list=True)
    assert feats[-1].flatten(1).shape == (3, 128)
    w, b = net.get_fc()
    assert w.shape == (6, 128) and b.shape == (6,)
    assert net.get_fc_layer() is net.fc and net.fc.out_features == 6
    assert net.forward_threshold(x, 0.1).shape == (3, 6)
    torch.testing.assert_close(net(x, return_unknown=True)[:, :6], net(x))


def test_export_is_a_plain_backbone_state_dict():
    net = MoonNet(ResNet18_32x32(num_classes=10)).eval()
    state = export_state_dict(net)
    assert not any("unknown" in k for k in state)
    plain = ResNet18_32x32(num_classes=10).eval()
    plain.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(plain(x), net(x))
    assert net(x, return_feature=True)[1].shape == (2, 512) and net.get_fc()[0].shape == (10, 512)
