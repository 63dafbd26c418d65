//! The tower layer.
pub struct WafLayer;
pub struct WafService;
