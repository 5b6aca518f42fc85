-- Seed 003's Prisma models as `prisma migrate` creates them (trimmed to
-- what the webhook touches): `sessionId` is the upsert's key (unique), and
-- `userId` must name an existing user: a session event for an unknown user
-- fails with the foreign key's message and is retried once the user exists
-- (`router events retry`).
CREATE TABLE IF NOT EXISTS "User" (
    "id" TEXT NOT NULL,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS "WhatsAppSession" (
    "id" TEXT NOT NULL,
    "sessionId" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "qr" TEXT,
    "message" TEXT,
    "isNotification" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    "aiConfig" JSONB,
    CONSTRAINT "WhatsAppSession_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "WhatsAppSession_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS "WhatsAppSession_sessionId_key" ON "WhatsAppSession"("sessionId");
