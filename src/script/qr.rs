//! QR codes as PNG data URLs (seed 003's `qrImage`), rendered straight from
//! the module matrix into an 8-bit grey PNG: no image crate needed.

use base64::Engine as _;
use qrcode::{Color, QrCode};

/// Pixels per module: a 41-module code gives a ~400 px image, easy to scan from a screen.
const SCALE: usize = 8;
/// The white border every reader expects, in modules.
const QUIET_ZONE: usize = 4;

/// `data:image/png;base64,...` of a QR code holding `text`.
pub fn data_url(text: &str) -> Result<String, String> {
    let png = png_bytes(text)?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)))
}

/// The PNG file of a QR code holding `text`.
pub fn png_bytes(text: &str) -> Result<Vec<u8>, String> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| format!("cannot encode a QR code: {e}"))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| format!("png: {e}"))?;
    writer.write_image_data(&pixels).map_err(|e| format!("png: {e}"))?;
    writer.finish().map_err(|e| format!("png: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// The PNG decodes, and a QR reader (rqrr) reads the text back from its pixels.
    #[test]
    fn renders_a_readable_png() {
        let text = "1@ABC123,xyz+/=,456";
        let png = super::png_bytes(text).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        assert_eq!(grids[0].decode().unwrap().1, text);
        assert!(super::data_url(text).unwrap().starts_with("data:image/png;base64,iVBORw0KGgo"));
    }
}
