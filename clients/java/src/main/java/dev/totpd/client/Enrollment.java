package dev.totpd.client;

/**
 * A new PENDING factor and its secret material: the only time totpd ever returns it.
 *
 * @param factor the pending factor
 * @param otpauthUri the otpauth:// URI for the QR code
 * @param secretBase32 the secret in base32 without padding, for typing into an app
 * @param qrPng the QR code as PNG bytes
 * @param qrSvg the QR code as an SVG document
 */
public record Enrollment(
    Factor factor, String otpauthUri, String secretBase32, byte[] qrPng, String qrSvg) {}
