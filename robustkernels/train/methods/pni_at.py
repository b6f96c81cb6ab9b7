"""PNI adversarial training (He, Rakin & Fan 2019): ``0.5 CE(clean) + 0.5 CE(adv)`` with the
weight noise on during the attack too; the trainer gives the noise scales no weight decay."""

from ...nn import is_pni
from .base import BatchResult, Method, cross_entropy


class PNIAT(Method):
    name = "pni_at"

    def bind(self, net, dataset_size, seed=0):
        if not any(is_pni(m) for m in net.modules()):
            raise ValueError("method pni_at needs a model with PNI layers: robustkernels.nn.convert_to_pni(model) "
                             "(or --pni on the command line)")
        super().bind(net, dataset_size, seed)

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(self.attack(), x, y)
            logits_clean = self.forward(model, x)
            logits_adv = self.forward(model, x_adv)
        loss = 0.5 * (cross_entropy(logits_clean, y, ctx.targets) + cross_entropy(logits_adv, y, ctx.targets))
        return BatchResult(loss + self.regularizer(), logits_adv)
