package dev.totpd.client;

import java.util.List;

/**
 * One page of audit events, oldest first.
 *
 * @param events the events of this page
 * @param nextPageToken the token of the next page; empty on the last one
 */
public record AuditPage(List<AuditEvent> events, String nextPageToken) {}
