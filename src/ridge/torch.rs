//! torch backend (in progress).
use super::*;
pub(crate) fn fit(_p: &RidgeProblem, _o: &RidgeOptions, _plan: &Plan) -> Result<RawFit> {
    bail!("the torch ridge backend is not implemented yet; use --backend cpu")
}
